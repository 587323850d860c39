"""The rating service: store, HTTP contract, resume, security, and durability under kill -9."""

from __future__ import annotations

import argparse
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pandas as pd
import pytest
import torch

from advqa.annotate.app import SET_SIZE, create_app
from advqa.annotate.store import RatingStore
from advqa.cli import annotate as annotate_cli
from advqa.cli.common import CommandError
from advqa.data import save_png

with warnings.catch_warnings():
    # Starlette >= 1.x suggests httpx2 for its TestClient; httpx still works.
    warnings.filterwarnings("ignore", message=".*httpx.*", category=UserWarning)
    from fastapi.testclient import TestClient

# AEs per reference: 2 (one set), 7 (two sets: 4 + 3), 5 (one full set).
AES = {"ref_a": 2, "ref_b": 7, "ref_c": 5}


def make_study(root: Path, aes: dict[str, int] = AES, size=(6, 9)) -> Path:
    """A fake study directory: manifest.parquet plus small PNGs (heights x widths)."""
    (root / "images" / "ref").mkdir(parents=True)
    (root / "images" / "adv").mkdir(parents=True)
    generator = torch.Generator().manual_seed(0)
    rows = []
    for name, count in aes.items():
        reference = f"images/ref/{name}.png"
        save_png(torch.rand(3, *size, generator=generator), root / reference)
        for index in range(count):
            identifier = f"{name}__fgsm-linf-eps{index}"
            adversarial = f"images/adv/{identifier}.png"
            save_png(torch.rand(3, size[0] + 1, size[1] + 2, generator=generator),
                     root / adversarial)
            rows.append({"id": identifier, "reference_path": reference,
                         "adversarial_path": adversarial, "image": name, "attack": "fgsm"})
    pd.DataFrame(rows).to_parquet(root / "manifest.parquet", index=False)
    return root


@pytest.fixture
def study(tmp_path):
    return make_study(tmp_path / "study")


@pytest.fixture
def database(tmp_path):
    return tmp_path / "ratings.sqlite"


@pytest.fixture
def client(study, database):
    with TestClient(create_app(study, database)) as test_client:
        yield test_client


def tokens(database, n=1, **options):
    with RatingStore(database) as store:
        return store.invite(n, **options)


def rate_set(client, token, body, score=3):
    for item in body["items"]:
        response = client.post("/api/ratings",
                               json={"token": token, "item_id": item["item_id"], "score": score})
        assert response.status_code == 201, response.text
        assert response.json() == {"stored": True}


# -- store -----------------------------------------------------------------------------

def test_store_upserts_and_names_raters(database):
    with RatingStore(database) as store:
        first, second = store.invite(2)
        (third,) = store.invite(1, prefix="lab")
        (fourth,) = store.invite(1)
        assert [store.rater(t) for t in (first, second, third, fourth)] == [
            "rater-001", "rater-002", "lab-001", "rater-003"]
        assert store.rater("nope") is None and store.rater("") is None
        store.rate(first, "x", 2)
        store.rate(first, "x", 5)
        store.rate(second, "x", 1)
        table = store.ratings()
        assert list(table.columns) == ["rater", "item_id", "score", "updated"]
        assert table[["rater", "item_id", "score"]].values.tolist() == [
            ["rater-001", "x", 5], ["rater-002", "x", 1]]
        assert store.rated_items(first) == {"x"} and store.rated_items(third) == set()
        for bad in (0, 6, 2.5, True, "3", None):
            with pytest.raises(ValueError):
                store.rate(first, "x", bad)
        with pytest.raises(LookupError):
            store.rate("unknown", "x", 3)
        journal, synchronous = (store._query(f"PRAGMA {name}")[0][0]
                                for name in ("journal_mode", "synchronous"))
        assert journal == "wal" and synchronous == 2  # FULL


def test_tokens_are_unique_and_random(database):
    issued = tokens(database, 200)
    assert len(set(issued)) == 200
    assert all(len(token) >= 32 and token.replace("-", "").replace("_", "").isalnum()
               for token in issued)
    # 192 random bits each: the characters used look uniform, nothing shared.
    assert len(set("".join(issued))) > 55
    assert len({token[:8] for token in issued}) == 200


def test_postgres_without_psycopg_names_the_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "psycopg", None)
    with pytest.raises(ImportError, match=r"pip install \"psycopg\[binary\]\""):
        RatingStore("postgresql://user@localhost/ratings")


# -- HTTP contract ------------------------------------------------------------------------

def test_a_rater_goes_through_every_set(client, database):
    (token,) = tokens(database)
    total = sum(AES.values())
    seen, sets = [], 0
    while True:
        body = client.get("/api/next", params={"token": token}).json()
        assert body["done"] == len(seen) and body["total"] == total
        if not body["items"]:
            break
        sets += 1
        ids = [item["item_id"] for item in body["items"]]
        assert 1 <= len(ids) <= SET_SIZE
        # One reference per set, shown by the first AE's id, with its name and size.
        references = {item_id.split("__")[0] for item_id in ids}
        assert references == {body["reference"]["name"]}
        assert body["reference"]["image_url"] == f"/images/reference/{ids[0]}"
        assert (body["reference"]["width"], body["reference"]["height"]) == (9, 6)
        for item in body["items"]:
            assert item["image_url"] == f"/images/adversarial/{item['item_id']}"
            assert (item["width"], item["height"]) == (11, 7)
            png = client.get(item["image_url"])
            assert png.status_code == 200 and png.headers["content-type"] == "image/png"
            assert png.content.startswith(b"\x89PNG")
        reference = client.get(body["reference"]["image_url"])
        assert reference.status_code == 200 and reference.content.startswith(b"\x89PNG")
        rate_set(client, token, body)
        seen += ids
    assert sets == 4  # ref_b's 7 AEs give two sets
    assert sorted(seen) == sorted(set(seen)) and len(seen) == total
    assert body == {"items": [], "done": total, "total": total}


def test_order_is_per_rater_and_deterministic(study, database):
    first, second = tokens(database, 2)
    with TestClient(create_app(study, database)) as client:
        app = client.app
        assert app.state.study.sets(first) == app.state.study.sets(first)
        orders = {tuple(map(tuple, app.state.study.sets(t))) for t in tokens(database, 12)}
        assert len(orders) > 1
        flat = [item_id for ids in app.state.study.sets(second) for item_id in ids]
        assert sorted(flat) == sorted(app.state.study.items)


def test_rerating_updates_and_never_duplicates(client, database):
    (token,) = tokens(database)
    item_id = client.get("/api/next", params={"token": token}).json()["items"][0]["item_id"]
    for score in (1, 4, 2):
        response = client.post("/api/ratings",
                               json={"token": token, "item_id": item_id, "score": score})
        assert response.status_code == 201
    with RatingStore(database) as store:
        table = store.ratings()
    assert len(table) == 1 and table.score.tolist() == [2]


def test_bad_requests_get_4xx_with_a_message(client, database):
    (token,) = tokens(database)
    item_id = client.get("/api/next", params={"token": token}).json()["items"][0]["item_id"]
    good = {"token": token, "item_id": item_id, "score": 3}
    cases = [
        ({**good, "token": "not-a-token"}, 403),
        ({**good, "item_id": "ref_a__nothing"}, 404),
        ({**good, "item_id": "../manifest.parquet"}, 404),
        *(({**good, "score": bad}, 422) for bad in (0, 6, -1, 2.5, 3.0, True, False, "3", None,
                                                     [3], {"v": 3})),
        *(({k: v for k, v in good.items() if k != key}, 422) for key in good),
        ({**good, "token": 5}, 422),
        ({**good, "item_id": 5}, 422),
        ([good], 422),
        ("3", 422),
    ]
    for body, status in cases:
        response = client.post("/api/ratings", json=body)
        assert response.status_code == status, (body, response.text)
        assert isinstance(response.json()["detail"], str) and response.json()["detail"]
    for raw in (b"{not json", b"", b"\xff\xfe"):
        response = client.post("/api/ratings", content=raw,
                               headers={"content-type": "application/json"})
        assert response.status_code == 400 and response.json()["detail"]
    for params in ({}, {"token": ""}, {"token": "not-a-token"}):
        response = client.get("/api/next", params=params)
        assert response.status_code in (403, 404) and response.json()["detail"]
    with RatingStore(database) as store:
        assert store.ratings().empty


def test_images_only_from_the_manifest(client, study, tmp_path):
    (tmp_path / "secret.png").write_bytes(b"\x89PNG secret")
    known = "ref_a__fgsm-linf-eps0"
    assert client.get(f"/images/adversarial/{known}").status_code == 200
    for url in ["/images/adversarial/..%2F..%2Fetc%2Fpasswd",
                "/images/adversarial/../../etc/passwd",
                "/images/reference/..%2Fsecret.png",
                "/images/adversarial/%2E%2E%2Fsecret.png",
                "/images/adversarial/images%2Fadv%2Fref_a__fgsm-linf-eps0.png",
                "/images/adversarial/ref_a",
                "/images/reference/ref_a.png",
                "/images/adversarial/manifest.parquet",
                "/images/other/" + known,
                "/static/../manifest.parquet",
                "/static/..%2F..%2Fstore.py"]:
        response = client.get(url)
        assert response.status_code == 404, url
        assert b"secret" not in response.content


def test_manifest_pointing_outside_the_study_is_refused(tmp_path):
    study = make_study(tmp_path / "study")
    table = pd.read_parquet(study / "manifest.parquet")
    table.loc[0, "adversarial_path"] = "../outside.png"
    (tmp_path / "outside.png").write_bytes((study / table.loc[1, "adversarial_path"]).read_bytes())
    table.to_parquet(study / "manifest.parquet", index=False)
    with pytest.raises(FileNotFoundError, match="inside the study"):
        create_app(study, tmp_path / "r.sqlite")


def test_page_and_static_files(client, database):
    (token,) = tokens(database)
    page = client.get("/", params={"token": token})
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]
    html = page.text
    for needle in ('id="reference"', 'id="submit"', 'id="progress"', 'id="finished"',
                   "/static/app.js", "/static/style.css", "no visible difference",
                   "obviously perturbed"):
        assert needle in html
    assert "http" not in html.replace("http-equiv", "")  # no CDN, no external reference
    script = client.get("/static/app.js")
    style = client.get("/static/style.css")
    assert script.status_code == style.status_code == 200
    assert "score-" in script.text and "max-width: none" in style.text
    assert "http" not in script.text + style.text
    assert page.headers["referrer-policy"] == "no-referrer"


def test_resume_after_reconnect(study, database):
    (token,) = tokens(database)
    with TestClient(create_app(study, database)) as client:
        first = client.get("/api/next", params={"token": token}).json()
        rate_set(client, token, first)
        second = client.get("/api/next", params={"token": token}).json()
        # Half of the next set rated, then the rater leaves.
        client.post("/api/ratings", json={"token": token,
                                          "item_id": second["items"][0]["item_id"], "score": 5})
    with TestClient(create_app(study, database)) as client:
        again = client.get("/api/next", params={"token": token}).json()
        assert again["items"] == second["items"]
        assert again["done"] == len(first["items"]) + 1
        rate_set(client, token, again)
        third = client.get("/api/next", params={"token": token}).json()
        assert {i["item_id"] for i in third["items"]}.isdisjoint(
            {i["item_id"] for i in first["items"] + second["items"]})


def test_raters_never_see_each_others_scores(client, database):
    first, second = tokens(database, 2)
    body = client.get("/api/next", params={"token": first}).json()
    rate_set(client, first, body, score=5)
    other = client.get("/api/next", params={"token": second})
    assert other.json()["done"] == 0 and "score" not in other.text
    assert all(set(item) == {"item_id", "image_url", "width", "height"}
               for item in other.json()["items"])


# -- CLI ------------------------------------------------------------------------------------

def test_cli_invite_and_serve_guard(database, study, capsys):
    top = argparse.ArgumentParser()
    annotate_cli.register(top.add_subparsers())
    arguments = top.parse_args(["annotate", "invite", "--db", str(database), "--n", "3",
                                "--prefix", "lab"])
    assert arguments.handler(arguments) == 0
    out, err = capsys.readouterr()
    issued = out.split()
    assert len(issued) == 3 and f"http://127.0.0.1:8000/?token={issued[0]}" in err
    with RatingStore(database) as store:
        assert [store.rater(t) for t in issued] == ["lab-001", "lab-002", "lab-003"]
    arguments = top.parse_args(["annotate", "serve", "--study", str(study), "--db",
                                str(database), "--host", "0.0.0.0"])
    with pytest.raises(CommandError, match="--allow-remote"):
        arguments.handler(arguments)
    loopback = annotate_cli.is_loopback
    assert loopback("127.0.0.1") and loopback("::1") and loopback("localhost")
    assert not loopback("0.0.0.0") and not loopback("192.168.1.2") and not loopback("::")


# -- durability: kill -9 mid-load -----------------------------------------------------------

def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_server(study: Path, database: Path, port: int) -> subprocess.Popen:
    environment = {**os.environ, "ADVQA_STUDY": str(study), "ADVQA_DB": str(database)}
    process = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "--factory", "advqa.annotate.app:app_from_environment",
         "--host", "127.0.0.1", "--port", str(port), "--log-level", "warning"],
        env=environment, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited: {process.stderr.read().decode()}")
        try:
            httpx.get(f"http://127.0.0.1:{port}/static/style.css", timeout=1)
            return process
        except httpx.TransportError:
            time.sleep(0.1)
    process.kill()
    raise RuntimeError("server did not start")


def test_acknowledged_ratings_survive_kill_9(tmp_path):
    study = make_study(tmp_path / "study", {f"ref{i:02d}": 5 for i in range(16)})
    database = tmp_path / "ratings.sqlite"
    raters = tokens(database, 4)
    item_ids = sorted(pd.read_parquet(study / "manifest.parquet").id)
    pairs = [(token, item_id) for item_id in item_ids for token in raters]
    # 320 distinct (rater, item) pairs, so each stored score is the one acknowledged.
    work = [(token, item_id, 1 + index % 5) for index, (token, item_id) in enumerate(pairs)]
    port = free_port()
    acknowledged: list[tuple[str, str, int]] = []
    lock, enough = threading.Lock(), threading.Event()
    server = start_server(study, database, port)

    def send(job):
        token, item_id, score = job
        try:
            with httpx.Client(timeout=10) as http:
                response = http.post(f"http://127.0.0.1:{port}/api/ratings",
                                     json={"token": token, "item_id": item_id, "score": score})
        except httpx.TransportError:
            return
        if 200 <= response.status_code < 300:
            with lock:
                acknowledged.append(job)
                if len(acknowledged) >= 60:
                    enough.set()

    try:
        with ThreadPoolExecutor(8) as pool:
            futures = [pool.submit(send, job) for job in work]
            assert enough.wait(30), "no load reached the server"
            server.send_signal(signal.SIGKILL)  # mid-load, requests in flight
            server.wait(10)
            for future in futures:
                future.result()
        assert 60 <= len(acknowledged) < len(work), "the kill did not land mid-load"
        server = start_server(study, database, port)
        # After the restart the server answers from the same database.
        status = httpx.get(f"http://127.0.0.1:{port}/api/next",
                           params={"token": raters[0]}, timeout=10).json()
        assert status["total"] == len(item_ids)
        server.send_signal(signal.SIGTERM)
        server.wait(10)
    finally:
        if server.poll() is None:
            server.kill()
            server.wait()
    with RatingStore(database) as store:
        table = store.ratings()
        names = {store.rater(token): token for token in raters}
    stored = {(names[row.rater], row.item_id): row.score for row in table.itertuples()}
    assert not table.duplicated(["rater", "item_id"]).any()
    missing = [job for job in acknowledged if stored.get(job[:2]) != job[2]]
    assert not missing, f"{len(missing)} acknowledged rating(s) lost"
    assert set(stored) <= {job[:2] for job in work}
