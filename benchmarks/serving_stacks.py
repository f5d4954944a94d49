"""The same package in each serving stack, one server alone at a time, rounds alternated: our local
endpoint; AWS's PyTorch stack (TorchServe + the SageMaker toolkit, the deploy image's versions) with its
defaults; that stack with the environment promote now sets for the instance; that stack with other
worker x thread splits (to find the best configuration it can reach here); the bare batched forward.

    .venv/bin/python benchmarks/serving_stacks.py [--rounds 2 --requests 96 --instance-type ml.m5.large]

Needs the inference-image environment (``python -m deploy.image_stack``) and Java. The
instance type should match this machine's cores (ml.m5.large: 2 vCPUs). Targets (issue 10): promote's
environment >= 0.9x the best configuration measured for the AWS stack and >= 2x its defaults at
concurrency 16; our local endpoint >= the tuned AWS stack.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]
RESULTS = ROOT / "benchmarks" / "results" / "serving_stacks.json"

from benchmarks.serving import ceiling, free_port, load, make_image, make_package, start  # noqa: E402
from conf.loader import load_config  # noqa: E402
from deploy import gate_stack  # noqa: E402
from deploy.image_stack.torchserve import serve  # noqa: E402


def stack_peak_rss_mb(base: Path) -> float:
    """Peak RSS summed over the stack's processes (Java front end + Python workers): those whose
    environment names ``base`` as SAGEMAKER_BASE_DIR."""
    marker, total = f"SAGEMAKER_BASE_DIR={base}".encode(), 0
    for proc in Path("/proc").iterdir():
        try:
            if proc.name.isdigit() and marker in (proc / "environ").read_bytes().split(b"\0"):
                status = (proc / "status").read_text().splitlines()
                total += next(int(line.split()[1]) for line in status if line.startswith("VmHWM:"))
        except (OSError, StopIteration):
            continue
    return round(total / 1024, 1)


def measure(port: int, image: bytes, requests: int) -> dict:
    load(port, image, 4, 8)  # warm-up: every worker has served
    return {"c1": load(port, image, 1, max(8, requests // 3)), "c16": load(port, image, 16, requests)}


def run_ours(package_dir: Path, image: bytes, requests: int, folder: Path) -> dict:
    port = free_port()
    command = [sys.executable, "-m", "dogbreeds.cli", "serve", str(package_dir), f"serve.port={port}"]
    proc = start(command, port, folder / "ours.log")
    try:
        results = measure(port, image, requests)
        status = Path(f"/proc/{proc.pid}/status").read_text().splitlines()
        results["peak_rss_mb"] = round(
            next(int(x.split()[1]) for x in status if x.startswith("VmHWM:")) / 1024, 1
        )
        return results
    finally:
        proc.terminate()
        proc.wait(30)


def run_stack(
    package_dir: Path, environment: dict, image: bytes, requests: int, folder: Path, name: str
) -> dict:
    base = folder / name
    base.mkdir()
    python = gate_stack.python_of(load_config([]).deploy)  # the very stack promote's container gate serves
    with serve(python, package_dir, base, environment) as url:
        results = measure(int(url.rsplit(":", 1)[1]), image, requests)
        results["peak_rss_mb"] = stack_peak_rss_mb(base)
    subprocess.run(["rm", "-rf", str(base)], check=False)
    return results


def configurations(package_dir: Path, tarball: Path, instance_type: str) -> dict[str, dict]:
    """name -> the AWS stack's model environment."""
    from conf.loader import load_config
    from deploy import promote
    from deploy.local_endpoint.server import load_serving_module, serving_settings

    cfg = load_config(["deploy.target=sagemaker", f"deploy.instance_type={instance_type}"])
    limits = serving_settings(load_serving_module(package_dir), cfg.serve).to_env()  # promote before issue 10
    tuned = promote.serving_environment(tarball, cfg.serve, cfg.deploy)
    cores = os.cpu_count() or 1
    configs = {"aws_defaults": limits, "aws_promote": tuned}
    for workers in sorted({1, 2, cores}):
        threads = max(1, cores // workers)
        env = {**tuned, "SAGEMAKER_MODEL_SERVER_WORKERS": str(workers), "SAGEMAKER_TS_MIN_WORKERS": str(workers),
               "SAGEMAKER_TS_MAX_WORKERS": str(workers), "OMP_NUM_THREADS": str(threads)}  # fmt: skip
        if env != tuned:
            configs[f"aws_{workers}w_x_{threads}t"] = env
    return configs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arch", default="resnet18")
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--requests", type=int, default=96, help="requests at concurrency 16")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument(
        "--instance-type", default="ml.m5.large", help="the ml.* type this machine stands for"
    )
    args = parser.parse_args()

    image = make_image()
    runs: dict[str, list[dict]] = {}
    with tempfile.TemporaryDirectory(prefix="bench-stacks-") as tmp:
        folder = Path(tmp)
        package_dir = make_package(args.arch, args.image_size, folder)
        bound = ceiling(package_dir, image, os.cpu_count() or 1, 16, repeats=5)
        print(f"ceiling (bare batched forward): {bound}")
        configs = configurations(package_dir, folder / "model.tar.gz", args.instance_type)
        for round_index in range(args.rounds):
            order = ["ours", *configs]
            order = order if round_index % 2 == 0 else order[::-1]  # alternate: drift hits every server alike
            for name in order:
                if name == "ours":
                    result = run_ours(package_dir, image, args.requests, folder)
                else:
                    result = run_stack(
                        package_dir, configs[name], image, args.requests, folder, f"{name}-{round_index}"
                    )
                runs.setdefault(name, []).append(result)
                print(f"round {round_index} {name}: c1 {result['c1']['images_per_s']} req/s, "
                      f"c16 {result['c16']['images_per_s']} req/s p95 {result['c16']['p95_ms']} ms")  # fmt: skip

    def c16(name: str) -> float:
        return max(run["c16"]["images_per_s"] for run in runs[name])  # best round: the least disturbed

    aws = [name for name in runs if name.startswith("aws_")]
    best = max(aws, key=c16)
    summary = {
        "best_aws_configuration": best,
        "promote_vs_best_aws_c16": round(c16("aws_promote") / c16(best), 3),
        "promote_vs_aws_defaults_c16": round(c16("aws_promote") / c16("aws_defaults"), 3),
        "ours_vs_promote_c16": round(c16("ours") / c16("aws_promote"), 3),
        "ours_c16_vs_ceiling": round(c16("ours") / bound["images_per_s"], 3),
        "errors": sum(run[c]["errors"] for name in runs for run in runs[name] for c in ("c1", "c16")),
        "load_average_after": os.getloadavg()[0],
    }
    print(json.dumps(summary, indent=2))
    record = {
        "machine": f"{os.cpu_count()}-core CPU, no GPU (shared with other jobs)",
        "platform": platform.platform(),
        "arch": args.arch,
        "image_size": args.image_size,
        "instance_type": args.instance_type,
        "ceiling": bound,
        "environments": {name: configs[name] for name in configs},
        "runs": runs,
        "summary": summary,
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(record, indent=2) + "\n")
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
