"""Local endpoint throughput and latency: our server vs a naive one-request-at-a-time server vs the
model's own ceiling (bare batched forward), same machine, model and image, in one run.

    .venv/bin/python benchmarks/serving.py [--arch resnet18 --image-size 224 --requests 96 --rounds 3]

Targets (printed with the summary): concurrency-1 p50 within 5 ms of decode + bare batch-1 forward of the
same image (measured in this run), concurrency 16 >= 90% of the batched ceiling, ahead of the naive server
at both concurrencies. Servers run one at a time, in alternated rounds; the round with the median
throughput is reported per concurrency. The ceiling is measured in a fresh process at the start of every
round (medians reported), so it sees the same machine as the servers beside it.

The model is an untrained network of the real shape (133 classes): speed does not depend on the weights.
Both servers run as separate processes with the same torch thread count; the load generator uses
keep-alive HTTP connections from threads in this process.
"""

from __future__ import annotations

import argparse
import http.client
import io
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
RESULTS = ROOT / "benchmarks" / "results" / "serving.json"


def make_package(arch: str, image_size: int, folder: Path) -> Path:
    import torch

    from deploy.packaging.builder import build_package, unpack
    from lightning_app.serving.inference import build_network

    classes = [f"breed_{i:03d}" for i in range(133)]
    network = build_network(arch, len(classes))
    checkpoint = {
        "state_dict": {f"model.{k}": v for k, v in network.state_dict().items()},
        "dogbreeds": {
            "arch": arch,
            "class_names": classes,
            "head": "fc",
            "preprocessing": {"image_size": image_size, "resize": round(image_size * 1.143),
                              "mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225]},
        },
    }  # fmt: skip
    torch.save(checkpoint, folder / "bench.ckpt")
    return unpack(build_package(folder / "bench.ckpt", folder / "model.tar.gz"), folder / "model")


def make_image() -> bytes:
    """A 500x375 photo-like JPEG, the typical dogImages size."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    gradient = np.linspace(0, 255, 500, dtype=np.float32)[None, :, None].repeat(375, 0).repeat(3, 2)
    pixels = np.clip(gradient + rng.normal(0, 25, gradient.shape), 0, 255).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, "JPEG", quality=90)
    return buffer.getvalue()


def naive_server(package_dir: str, port: int, threads: int) -> None:
    """Baseline: the package's own four functions behind a single-threaded http.server, one request at a time."""
    import torch

    torch.set_num_threads(threads)
    sys.path.insert(0, str(Path(package_dir) / "code"))
    import inference

    model = inference.model_fn(package_dir)

    class Handler(BaseHTTPRequestHandler):  # HTTP/1.0: one request per connection, so clients queue fairly
        def log_message(self, *args):
            pass

        def _send(self, status: int, body: bytes) -> None:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self):
            self._send(200, b"{}")

        def do_POST(self):
            body = self.rfile.read(int(self.headers["Content-Length"]))
            data = inference.input_fn(body, self.headers["Content-Type"])
            answer, _ = inference.output_fn(inference.predict_fn(data, model), "application/json")
            self._send(200, answer.encode())

    class Server(HTTPServer):
        request_queue_size = 128

    Server(("127.0.0.1", port), Handler).serve_forever()


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def load(port: int, image: bytes, concurrency: int, requests: int) -> dict:
    """``requests`` POSTs from ``concurrency`` keep-alive connections; throughput and latency percentiles."""
    latencies, errors = [], 0
    lock = threading.Lock()
    per_worker = [requests // concurrency + (i < requests % concurrency) for i in range(concurrency)]

    def worker(count: int) -> None:
        nonlocal errors
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
        for _ in range(count):
            start = time.perf_counter()
            conn.request("POST", "/invocations", image, {"Content-Type": "image/jpeg"})
            response = conn.getresponse()
            body = response.read()
            elapsed = time.perf_counter() - start
            with lock:
                latencies.append(elapsed)
                errors += response.status != 200 or b"predictions" not in body
        conn.close()

    start = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        list(pool.map(worker, per_worker))
    wall = time.perf_counter() - start
    latencies.sort()
    return {
        "concurrency": concurrency,
        "requests": requests,
        "images_per_s": round(requests / wall, 2),
        "p50_ms": round(1000 * statistics.median(latencies), 2),
        "p95_ms": round(1000 * latencies[int(0.95 * (len(latencies) - 1))], 2),
        "errors": errors,
    }


def ceiling(package_dir: Path, image: bytes, threads: int, batch: int, repeats: int) -> dict:
    """Bare forward passes (preprocessed tensors, no HTTP, no decode): the model's own limit. Run in a fresh
    process of its own each round (``in_fresh_process``), like the servers: one OpenMP team, nothing else."""
    import torch

    from deploy.local_endpoint.server import load_serving_module

    torch.set_num_threads(threads)
    serving = load_serving_module(package_dir)
    model = serving.load_model(package_dir, serving.ServingSettings(), "auto")
    tensor = model.transform(serving.decode_image(image, model))

    def timed(n: int) -> float:
        images = tensor.unsqueeze(0).repeat(n, 1, 1, 1).to(model.device)
        with torch.inference_mode():
            model.network(images)  # warm-up
            times = []
            for _ in range(repeats):
                start = time.perf_counter()
                model.network(images)
                if model.device.type == "cuda":
                    torch.cuda.synchronize()
                times.append(time.perf_counter() - start)
        return statistics.median(times)

    def decode_time() -> float:
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            model.transform(serving.decode_image(image, model))
            times.append(time.perf_counter() - start)
        return statistics.median(times)

    decode, single, batched = decode_time(), timed(1), timed(batch)
    return {
        "decode_ms": round(1000 * decode, 2),
        "forward_batch1_ms": round(1000 * single, 2),
        "decode_plus_forward_batch1_ms": round(1000 * (decode + single), 2),
        f"forward_batch{batch}_ms": round(1000 * batched, 2),
        "images_per_s": round(batch / batched, 2),
        "device": str(model.device),
    }


def in_fresh_process(flag: str, *args) -> str:
    """Runs this script with a hidden ``flag`` in a new interpreter (one OpenMP team, nothing else in it)
    and returns the last line it prints."""
    command = [sys.executable, __file__, flag, *map(str, args)]
    return subprocess.run(command, capture_output=True, text=True, check=True, cwd=ROOT).stdout.splitlines()[
        -1
    ]


def median_ceiling(measured: list[dict]) -> dict:
    """Each figure's median over the rounds."""
    bound = {key: statistics.median(m[key] for m in measured) for key in measured[0] if key != "device"}
    return {**bound, "device": measured[0]["device"]}


def forward_probe(package_dir: str, image_path: str, threads: int, teams: int, repeats: int = 15) -> None:
    """Prints the median batch-1 forward (ms) of the main thread while ``teams - 1`` other threads, each
    having run a forward (and so holding an OpenMP team of its own), stay alive."""
    import torch

    from deploy.local_endpoint.server import load_serving_module

    torch.set_num_threads(threads)
    serving = load_serving_module(Path(package_dir))
    model = serving.load_model(Path(package_dir), serving.ServingSettings(), "cpu")
    images = model.transform(serving.decode_image(Path(image_path).read_bytes(), model)).unsqueeze(0)

    def forward() -> None:
        with torch.inference_mode():
            model.network(images)

    release, started = threading.Event(), threading.Semaphore(0)

    def hold_a_team() -> None:
        forward()
        started.release()
        release.wait()

    others = [threading.Thread(target=hold_a_team) for _ in range(teams - 1)]
    for other in others:
        other.start()
        started.acquire()
    forward()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        forward()
        times.append(time.perf_counter() - start)
    release.set()
    print(json.dumps(round(1000 * statistics.median(times), 2)))


def openmp_teams(package_dir: Path, image_path: Path, threads: int, rounds: int) -> dict:
    """Why the server runs every tensor operation on one thread: the batch-1 forward in a process with one
    OpenMP team vs one where a second thread has run a forward too, in alternated fresh processes."""
    medians: dict[int, list[float]] = {1: [], 2: []}
    for index in range(rounds):
        for teams in (1, 2) if index % 2 == 0 else (2, 1):
            out = in_fresh_process("--forward-probe", package_dir, image_path, threads, teams)
            medians[teams].append(float(out))
    return {
        "forward_batch1_ms_one_openmp_team": statistics.median(medians[1]),
        "forward_batch1_ms_two_openmp_teams": statistics.median(medians[2]),
        "rounds": medians,
    }


def start(command: list[str], port: int, log: Path) -> subprocess.Popen:
    from deploy.local_endpoint.process import wait_until_ready

    with open(log, "wb") as out:
        proc = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, cwd=ROOT)
    wait_until_ready(f"http://127.0.0.1:{port}", 180, alive=lambda: proc.poll() is None)
    return proc


def run_server(name: str, command: list[str], port: int, image: bytes, args, folder: Path) -> dict:
    proc = start(command, port, folder / f"{name}.log")
    try:
        load(port, image, 4, 8)  # warm-up
        results = {
            "c1": load(port, image, 1, args.requests // 3),
            "c16": load(port, image, 16, args.requests),
        }
        results["peak_rss_mb"] = round(peak_rss_mb(proc.pid), 1)
        return results
    finally:
        proc.terminate()
        proc.wait(30)


def median_round(rounds: list[dict]) -> dict:
    """Per concurrency, the round with the median throughput (its p50 and p95 go with it)."""
    pick = {}
    for key in ("c1", "c16"):
        ordered = sorted((r[key] for r in rounds), key=lambda result: result["images_per_s"])
        pick[key] = ordered[(len(ordered) - 1) // 2]
    return pick | {"peak_rss_mb": max(r["peak_rss_mb"] for r in rounds), "rounds": len(rounds)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arch", default="resnet18")
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--requests", type=int, default=96, help="requests at concurrency 16")
    parser.add_argument("--max-batch-size", type=int, default=16)
    parser.add_argument(
        "--rounds", type=int, default=3, help="alternated rounds per server; medians reported"
    )
    parser.add_argument(
        "--naive-server", nargs=3, metavar=("PACKAGE", "PORT", "THREADS"), help=argparse.SUPPRESS
    )
    parser.add_argument(
        "--forward-probe", nargs=4, metavar=("PACKAGE", "IMAGE", "THREADS", "TEAMS"), help=argparse.SUPPRESS
    )
    parser.add_argument(
        "--ceiling", nargs=4, metavar=("PACKAGE", "IMAGE", "THREADS", "BATCH"), help=argparse.SUPPRESS
    )
    args = parser.parse_args()
    if args.naive_server:
        naive_server(args.naive_server[0], int(args.naive_server[1]), int(args.naive_server[2]))
        return
    if args.ceiling:
        package, image_path, threads, batch = args.ceiling
        bound = ceiling(Path(package), Path(image_path).read_bytes(), int(threads), int(batch), repeats=15)
        print(json.dumps(bound))
        return
    if args.forward_probe:
        package, image_path, threads, teams = args.forward_probe
        forward_probe(package, image_path, int(threads), int(teams))
        return

    threads = os.cpu_count() or 1
    image = make_image()
    with tempfile.TemporaryDirectory(prefix="bench-serving-") as tmp:
        folder = Path(tmp)
        package_dir = make_package(args.arch, args.image_size, folder)
        image_path = folder / "image.jpg"
        image_path.write_bytes(image)
        teams = openmp_teams(package_dir, image_path, threads, args.rounds)
        print(f"batch-1 forward, one vs two OpenMP teams in the process: {teams}")
        commands = {
            "ours": lambda port: [sys.executable, "-m", "dogbreeds.cli", "serve", str(package_dir),
                                  f"serve.port={port}", f"serve.max_batch_size={args.max_batch_size}"],
            "naive": lambda port: [sys.executable, __file__, "--naive-server", str(package_dir), str(port),
                                   str(threads)],
        }  # fmt: skip
        rounds: dict[str, list[dict]] = {name: [] for name in ("ceiling", *commands)}
        for round_index in range(args.rounds):  # alternated, so drift from other jobs hits all three
            measured = in_fresh_process("--ceiling", package_dir, image_path, threads, args.max_batch_size)
            rounds["ceiling"].append(json.loads(measured))
            print(f"round {round_index + 1} ceiling (bare forward): {rounds['ceiling'][-1]}", flush=True)
            for name in list(commands) if round_index % 2 == 0 else list(reversed(commands)):
                port = free_port()
                rounds[name].append(run_server(name, commands[name](port), port, image, args, folder))
                print(f"round {round_index + 1} {name}: {rounds[name][-1]}", flush=True)
    ours, naive = (median_round(rounds[name]) for name in ("ours", "naive"))
    bound = median_ceiling(rounds["ceiling"])
    print(f"ceiling, median of {args.rounds} rounds: {bound}")

    floor = bound["decode_plus_forward_batch1_ms"]
    summary = {
        "ours_c16_vs_ceiling": round(ours["c16"]["images_per_s"] / bound["images_per_s"], 3),
        "ours_c16_vs_naive_c16": round(ours["c16"]["images_per_s"] / naive["c16"]["images_per_s"], 3),
        "ours_c1_p50_minus_decode_plus_forward_ms": round(ours["c1"]["p50_ms"] - floor, 2),
        "naive_c1_p50_minus_decode_plus_forward_ms": round(naive["c1"]["p50_ms"] - floor, 2),
        "ours_c1_p50_vs_naive_c1_p50": round(ours["c1"]["p50_ms"] / naive["c1"]["p50_ms"], 3),
        "errors": ours["c1"]["errors"] + ours["c16"]["errors"],
    }
    summary["meets_targets"] = {
        "c1_overhead_within_5_ms": summary["ours_c1_p50_minus_decode_plus_forward_ms"] <= 5,
        "c16_at_least_0.9_of_ceiling": summary["ours_c16_vs_ceiling"] >= 0.9,
        "ahead_of_naive_at_c1_and_c16": summary["ours_c1_p50_vs_naive_c1_p50"] < 1
        and summary["ours_c16_vs_naive_c16"] > 1,
    }
    print(json.dumps(summary, indent=2))
    print("targets: c1 p50 - (decode + forward) <= 5 ms, c16 >= 0.9 x ceiling, ahead of naive at c1 and c16")
    machine = f"{os.cpu_count()}-core CPU" + (
        f", {bound['device']}" if bound["device"] != "cpu" else ", no GPU"
    )
    record = {
        "machine": machine,
        "platform": platform.platform(),
        "arch": args.arch,
        "image_size": args.image_size,
        "ceiling": bound,
        "openmp_teams": teams,
        "ours": ours,
        "naive": naive,
        "rounds": rounds,
        "summary": summary,
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(record, indent=2) + "\n")
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
