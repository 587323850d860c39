"""Load test of the rating server: concurrent raters over loopback, nothing lost or doubled.

A fake study of ``--references`` × ``--aes`` tiny PNGs is written to a temporary
directory, ``--raters`` tokens are created with ``RatingStore.invite``, and uvicorn
serves the app from a subprocess on 127.0.0.1 (``--workers`` processes). Every
simulated rater (an asyncio task with its own ``httpx.AsyncClient``) does what the page
does: ``GET /api/next``, ``POST /api/ratings`` for each AE of the set, next set, until
``{"items": []}``; so each rater posts one rating per item. A request that fails
(connection error, 5xx) is retried until it gets an answer, as a client whose server
went away would.

Afterwards the database is read back: the number of rows must equal the number of
unique (rater, item) pairs (= raters × items), and every rating that was acknowledged
with a 2xx must be there with its score. p50/p95/p99 latency and throughput of the
POSTs are printed. With ``--kill`` the server's process group gets SIGKILL when about
``--kill-at`` of all ratings have been acknowledged, and is restarted after
``--down`` seconds; the clients retry through the outage.

Exit status: 0 if nothing was lost or duplicated, 1 otherwise.

    .venv/bin/python benchmarks/annotate_load.py
    .venv/bin/python benchmarks/annotate_load.py --kill
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import zlib
from pathlib import Path

import httpx
import numpy as np
import pandas as pd
import torch

from advqa.annotate.store import RatingStore
from advqa.data import save_png
from advqa.study.build import MANIFEST_COLUMNS

#: The module-level app factory of advqa.annotate.app, configured by environment.
APP = "advqa.annotate.app:app_from_environment"


def make_study(root: Path, references: int, aes: int, size: int = 16) -> list[str]:
    """Write ``references`` × ``aes`` tiny PNGs and a manifest; return the item ids."""
    generator = torch.Generator().manual_seed(0)
    (root / "images/ref").mkdir(parents=True)
    (root / "images/adv").mkdir(parents=True)
    rows = []
    for r in range(references):
        reference = f"images/ref/r{r:03d}.png"
        save_png(torch.rand(3, size, size, generator=generator), root / reference)
        for a in range(aes):
            identifier = f"r{r:03d}-a{a}"
            adversarial = f"images/adv/{identifier}.png"
            save_png(torch.rand(3, size, size, generator=generator), root / adversarial)
            rows.append({
                "id": identifier, "reference_path": reference,
                "adversarial_path": adversarial, "image": f"r{r:03d}", "attack": "fgsm",
                "norm": "linf", "strength_name": "eps", "strength": (a + 1) / 255,
                "parameters": "{}", "label": 1, "clean_prediction": 1,
                "adversarial_prediction": 2, "clean_class": "a", "adversarial_class": "b",
                "clean_correct": True, "success": True, "l0": 1.0, "l1": 1.0, "l2": 1.0,
                "linf": 1.0, "steps": 1})
    pd.DataFrame(rows, columns=MANIFEST_COLUMNS).to_parquet(root / "manifest.parquet",
                                                            index=False)
    return [row["id"] for row in rows]


def free_port() -> int:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        return listener.getsockname()[1]


class Server:
    """uvicorn in its own process group, so that SIGKILL takes its workers too."""

    def __init__(self, study: Path, database: Path, port: int, workers: int, log: Path):
        self.port, self.workers, self.log = port, workers, log
        self.environment = {**os.environ, "ADVQA_STUDY": str(study),
                            "ADVQA_DB": str(database)}
        self.process: subprocess.Popen | None = None

    def start(self, timeout: float = 60) -> float:
        began = time.perf_counter()
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "uvicorn", APP, "--factory", "--host", "127.0.0.1",
                 "--port", str(self.port), "--workers", str(self.workers),
                 "--log-level", "warning", "--no-access-log"],
                env=self.environment, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"the server exited ({self.process.returncode}); "
                                   f"see {self.log}:\n{self.log.read_text()[-3000:]}")
            try:
                response = httpx.get(f"http://127.0.0.1:{self.port}/api/next",
                                     headers={"X-Advqa-Token": "probe"}, timeout=2)
                if response.status_code < 500:
                    return time.perf_counter() - began
            except httpx.TransportError:
                pass
            time.sleep(0.05)
        raise RuntimeError(f"the server did not answer within {timeout} s; see {self.log}")

    def kill(self) -> None:
        """SIGKILL the whole process group (uvicorn's supervisor and its workers)."""
        os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait()
        # Workers are in the same group; make sure none lingers before a restart.
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                os.killpg(self.process.pid, 0)
            except ProcessLookupError:
                return
            time.sleep(0.05)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                self.kill()


def score_for(token_index: int, item: str) -> int:
    return 1 + zlib.crc32(f"{token_index}:{item}".encode()) % 5


class Load:
    def __init__(self, base: str, tokens: list[str]):
        self.base, self.tokens = base, tokens
        self.acknowledged: dict[tuple[str, str], int] = {}  # (token, item) -> score
        self.latencies: list[float] = []  # seconds, every POST answered 2xx
        self.next_latencies: list[float] = []
        self.retries = 0
        self.client_errors: list[str] = []
        self.posted = 0
        self.active = len(tokens)
        self.event = asyncio.Event()

    async def request(self, client: httpx.AsyncClient, method: str, path: str, **kwargs):
        """Send until the server answers with something other than 5xx."""
        delay = 0.05
        while True:
            began = time.perf_counter()
            try:
                response = await client.request(method, path, **kwargs)
            except httpx.TransportError:
                response = None
            elapsed = time.perf_counter() - began
            if response is not None and response.status_code < 500:
                return response, elapsed
            self.retries += 1
            await asyncio.sleep(delay)
            delay = min(delay * 2, 0.5)

    async def rater(self, index: int) -> None:
        try:
            await self.rate_all(index)
        finally:
            self.active -= 1
            self.event.set()

    async def rate_all(self, index: int) -> None:
        token = self.tokens[index]
        limits = httpx.Limits(max_connections=1, max_keepalive_connections=1)
        async with httpx.AsyncClient(base_url=self.base, timeout=30, limits=limits,
                                     headers={"X-Advqa-Token": token}) as client:
            while True:
                response, elapsed = await self.request(client, "GET", "/api/next")
                if response.status_code != 200:
                    self.client_errors.append(f"GET /api/next {response.status_code}: "
                                              f"{response.text[:200]}")
                    return
                self.next_latencies.append(elapsed)
                items = response.json()["items"]
                if not items:
                    return
                for item in items:
                    score = score_for(index, item["item_id"])
                    response, elapsed = await self.request(
                        client, "POST", "/api/ratings",
                        json={"item_id": item["item_id"], "score": score})
                    self.posted += 1
                    if 200 <= response.status_code < 300:
                        self.acknowledged[token, item["item_id"]] = score
                        self.latencies.append(elapsed)
                        self.event.set()
                    else:
                        self.client_errors.append(f"POST {response.status_code}: "
                                                  f"{response.text[:200]}")
                        return

    async def run(self, on_progress=None) -> float:
        began = time.perf_counter()
        tasks = [asyncio.create_task(self.rater(i)) for i in range(len(self.tokens))]
        if on_progress is not None:
            tasks.append(asyncio.create_task(on_progress(self)))
        await asyncio.gather(*tasks)
        return time.perf_counter() - began


def percentiles(values: list[float]) -> dict[str, float]:
    array = np.asarray(values) * 1000
    return {f"p{q}": float(np.percentile(array, q)) for q in (50, 95, 99)} | {
        "max": float(array.max()), "mean": float(array.mean())}


def verify(database: Path, load: Load, tokens: list[str], items: list[str]) -> list[str]:
    """Problems found in the stored ratings (empty if none)."""
    with RatingStore(database) as store:
        ratings = store.ratings()
        names = {token: store.rater(token) for token in tokens}
    problems = []
    expected = len(tokens) * len(items)
    pairs = ratings[["rater", "item_id"]].drop_duplicates()
    if len(ratings) != len(pairs):
        problems.append(f"{len(ratings) - len(pairs)} duplicated (rater, item) rows")
    if len(pairs) != expected:
        problems.append(f"{len(pairs)} unique (rater, item) pairs stored, expected {expected}")
    if len(load.acknowledged) != expected:
        problems.append(f"{len(load.acknowledged)} ratings acknowledged, expected {expected}")
    stored = {(r, i): s for r, i, s in zip(ratings.rater, ratings.item_id, ratings.score,
                                           strict=True)}
    missing = wrong = 0
    for (token, item), score in load.acknowledged.items():
        found = stored.get((names[token], item))
        if found is None:
            missing += 1
        elif found != score:
            wrong += 1
    if missing:
        problems.append(f"{missing} acknowledged ratings LOST")
    if wrong:
        problems.append(f"{wrong} acknowledged ratings stored with another score")
    if set(ratings.item_id) - set(items):
        problems.append("ratings of items outside the study")
    problems += [f"client error: {e}" for e in load.client_errors[:10]]
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--raters", type=int, default=20)
    parser.add_argument("--references", type=int, default=50)
    parser.add_argument("--aes", type=int, default=4, help="AEs per reference")
    parser.add_argument("--workers", type=int, default=2, help="uvicorn worker processes")
    parser.add_argument("--kill", action="store_true",
                        help="kill -9 the server mid-load, restart it, and continue")
    parser.add_argument("--kill-at", type=float, default=0.4,
                        help="fraction of ratings acknowledged when the server is killed")
    parser.add_argument("--down", type=float, default=1.0,
                        help="seconds the server stays dead before the restart")
    parser.add_argument("--keep", type=Path, help="keep study, database and log here")
    parser.add_argument("--json", action="store_true", help="also print the summary as JSON")
    args = parser.parse_args(argv)
    if not 0 < args.kill_at < 1:
        parser.error("--kill-at is a fraction between 0 and 1")

    with tempfile.TemporaryDirectory(prefix="annotate-load-") as scratch:
        root = args.keep or Path(scratch)
        root.mkdir(parents=True, exist_ok=True)
        items = make_study(root / "study", args.references, args.aes)
        database = root / "ratings.sqlite"
        with RatingStore(database) as store:
            tokens = store.invite(args.raters)
        port = free_port()
        server = Server(root / "study", database, port, args.workers, root / "server.log")
        total = args.raters * len(items)
        events: dict[str, float] = {}
        startup = server.start()

        async def killer(load: Load) -> None:
            while len(load.acknowledged) < args.kill_at * total:
                if not load.active:
                    return
                load.event.clear()
                await load.event.wait()
            events["acknowledged_at_kill"] = len(load.acknowledged)
            began = time.perf_counter()
            server.kill()
            await asyncio.sleep(args.down)
            await asyncio.to_thread(server.start)
            events["outage_s"] = time.perf_counter() - began

        load = Load(f"http://127.0.0.1:{port}", tokens)
        try:
            wall = asyncio.run(load.run(killer if args.kill else None))
        finally:
            server.stop()
        problems = verify(database, load, tokens, items)

    summary = {
        "raters": args.raters, "items": len(items), "ratings_expected": total,
        "ratings_acknowledged": len(load.acknowledged), "posts_sent": load.posted,
        "retries": load.retries, "workers": args.workers, "kill": args.kill,
        "server_startup_s": round(startup, 2), "wall_s": round(wall, 2),
        "throughput_per_s": round(len(load.acknowledged) / wall, 1),
        "post_latency_ms": {k: round(v, 1) for k, v in percentiles(load.latencies).items()},
        "next_latency_ms": {k: round(v, 1)
                            for k, v in percentiles(load.next_latencies).items()},
        **events, "problems": problems,
    }
    latency = summary["post_latency_ms"]
    killed = ", server killed -9 and restarted" if args.kill else ""
    print(f"{args.raters} raters × {len(items)} items = {total} ratings, "
          f"{args.workers} uvicorn workers{killed}")
    if args.kill:
        print(f"  killed after {events.get('acknowledged_at_kill')} acknowledged; outage "
              f"{events.get('outage_s', float('nan')):.2f} s (incl. {args.down} s down)")
    print(f"  acknowledged {len(load.acknowledged)}, POSTs {load.posted}, "
          f"retried requests {load.retries}")
    print(f"  wall {wall:.2f} s, throughput {summary['throughput_per_s']} ratings/s")
    print(f"  POST /api/ratings latency ms: p50 {latency['p50']}, p95 {latency['p95']}, "
          f"p99 {latency['p99']}, max {latency['max']}")
    nxt = summary["next_latency_ms"]
    print(f"  GET /api/next latency ms: p50 {nxt['p50']}, p95 {nxt['p95']}, p99 {nxt['p99']}")
    if problems:
        print("FAILED:\n  " + "\n  ".join(problems))
    else:
        print("OK: 0 lost, 0 duplicated; every acknowledged rating stored with its score")
    if args.json:
        print(json.dumps(summary))
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
