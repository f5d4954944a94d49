"""The ``dogbreeds`` console script; the work lives in lightning_app/, experiments/ and deploy/."""
