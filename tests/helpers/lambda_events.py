"""Lambda events as API Gateway REST (v1), HTTP API (v2) and Function URLs deliver them to the handler."""

from __future__ import annotations

from helpers.images import b64


def rest_v1(body, content_type="application/json", is_base64=False, method="POST", query=None) -> dict:
    return {
        "resource": "/predict",
        "path": "/predict",
        "httpMethod": method,
        "headers": {"Content-Type": content_type},
        "queryStringParameters": query,
        "requestContext": {"resourcePath": "/predict", "httpMethod": method, "stage": "prod"},
        "body": body,
        "isBase64Encoded": is_base64,
    }


def http_v2(body, content_type="application/json", is_base64=False, route="POST /predict") -> dict:
    return {
        "version": "2.0",
        "routeKey": route,
        "rawPath": "/predict",
        "headers": {"content-type": content_type},
        "requestContext": {"http": {"method": "POST", "path": "/predict"}, "stage": "$default"},
        "body": body,
        "isBase64Encoded": is_base64,
    }


def function_url(body, content_type="application/json") -> dict:
    """Function URL events are v2-shaped with routeKey $default; bodies of non-text types arrive base64."""
    event = http_v2(b64(body if isinstance(body, bytes) else body.encode()), content_type, True, "$default")
    event["requestContext"]["domainName"] = "abc.lambda-url.us-east-1.on.aws"
    return event
