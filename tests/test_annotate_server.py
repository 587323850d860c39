"""The rating service: store, HTTP contract, resume, security, and durability under kill -9."""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import re
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

import advqa
from advqa.annotate.app import SET_SIZE, RedactTokens, allowed_hosts_for, create_app
from advqa.annotate.store import RatingStore
from advqa.cli import annotate as annotate_cli
from advqa.cli.common import CommandError
from advqa.data import save_png

with warnings.catch_warnings():
    # Starlette >= 1.x suggests httpx2 for its TestClient; httpx still works.
    warnings.filterwarnings("ignore", message=".*httpx.*", category=UserWarning)
    from fastapi.testclient import TestClient

#: A subprocess imports the advqa under test.
SOURCE = {"PYTHONPATH": os.pathsep.join(
    filter(None, [str(Path(advqa.__file__).parents[1]), os.environ.get("PYTHONPATH")]))}

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


#: What a browser on the rater's machine sends as Host for a server on 127.0.0.1:8000.
BASE = "http://127.0.0.1:8000"


def http_client(app) -> TestClient:
    return TestClient(app, base_url=BASE)


@pytest.fixture
def client(study, database):
    with http_client(create_app(study, database)) as client:
        yield client


def tokens(database, n=1, **options):
    with RatingStore(database) as store:
        return store.invite(n, **options)


def auth(token: str) -> dict[str, str]:
    return {"X-Advqa-Token": token}


def rate_set(client, token, body, score=3):
    for item in body["items"]:
        response = client.post("/api/ratings", headers=auth(token),
                               json={"item_id": item["item_id"], "score": score})
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
        body = client.get("/api/next", headers=auth(token)).json()
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


def served_order(client, token) -> list[list[str]]:
    """The sets ``GET /api/next`` gives a rater who rates each one, in order."""
    sets = []
    while (body := client.get("/api/next", headers=auth(token)).json())["items"]:
        sets.append([item["item_id"] for item in body["items"]])
        rate_set(client, token, body)
    return sets


def test_order_is_per_rater_and_deterministic(study, database, tmp_path):
    """The order is seeded by the rater's name: the same for a name in any database
    (and on every visit), different between raters, and recomputable from an export."""
    first, second = tokens(database, 2)
    with http_client(create_app(study, database)) as client:
        items = client.app.state.study
        assert items.sets("rater-001") == items.sets("rater-001")
        orders = {tuple(items.order(f"rater-{n:03d}")) for n in range(1, 13)}
        assert len(orders) > 1
        assert sorted(items.order("rater-002")) == sorted(items.items)
        served = served_order(client, first)
        assert served == items.sets("rater-001")
        assert served_order(client, second) == items.sets("rater-002") != served
    other = tmp_path / "other.sqlite"
    (again,) = tokens(other)  # rater-001 again, with another token
    with http_client(create_app(study, other)) as client:
        assert served_order(client, again) == served


def test_rerating_updates_and_never_duplicates(client, database):
    (token,) = tokens(database)
    item_id = client.get("/api/next", headers=auth(token)).json()["items"][0]["item_id"]
    for score in (1, 4, 2):
        response = client.post("/api/ratings", headers=auth(token),
                               json={"item_id": item_id, "score": score})
        assert response.status_code == 201
    with RatingStore(database) as store:
        table = store.ratings()
    assert len(table) == 1 and table.score.tolist() == [2]


def test_bad_requests_get_4xx_with_a_message(client, database):
    (token,) = tokens(database)
    item_id = client.get("/api/next", headers=auth(token)).json()["items"][0]["item_id"]
    good = {"item_id": item_id, "score": 3}
    cases = [
        ({**good, "token": token}, 422),  # the token goes in a header, never in the body
        ({**good, "item_id": "ref_a__nothing"}, 404),
        ({**good, "item_id": "../manifest.parquet"}, 404),
        *(({**good, "score": bad}, 422) for bad in (0, 6, -1, 2.5, 3.0, True, False, "3", None,
                                                     [3], {"v": 3})),
        *(({k: v for k, v in good.items() if k != key}, 422) for key in good),
        ({**good, "item_id": 5}, 422),
        ([good], 422),
        ("3", 422),
    ]
    for body, status in cases:
        response = client.post("/api/ratings", json=body, headers=auth(token))
        assert response.status_code == status, (body, response.text)
        assert isinstance(response.json()["detail"], str) and response.json()["detail"]
    for raw in (b"{not json", b"", b"\xff\xfe"):
        response = client.post("/api/ratings", content=raw,
                               headers={"content-type": "application/json", **auth(token)})
        assert response.status_code == 400 and response.json()["detail"]
    for headers in ({}, auth(""), auth("not-a-token")):
        for response in (client.get("/api/next", headers=headers),
                         client.post("/api/ratings", json=good, headers=headers)):
            assert response.status_code == 403 and response.json()["detail"]
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
    page = client.get("/")
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]
    html = page.text
    for needle in ('id="reference"', 'class="score" data-score="1"', 'data-score="5"',
                   'id="progress"', 'id="eta"', 'id="finished"', 'id="flicker"', 'id="break"',
                   'id="interlude"', "/static/app.js", "/static/style.css",
                   "no visible difference", "obviously perturbed"):
        assert needle in html
    assert "http" not in html.replace("http-equiv", "")  # no CDN, no external reference
    script = client.get("/static/app.js")
    style = client.get("/static/style.css")
    assert script.status_code == style.status_code == 200
    assert "/api/training" in script.text and "devicePixelRatio" in script.text
    assert "max-width: none" in style.text and "image-rendering: pixelated" in style.text
    assert "http" not in script.text + style.text
    assert page.headers["referrer-policy"] == "no-referrer"


def test_resume_after_reconnect(study, database):
    (token,) = tokens(database)
    with http_client(create_app(study, database)) as client:
        first = client.get("/api/next", headers=auth(token)).json()
        rate_set(client, token, first)
        second = client.get("/api/next", headers=auth(token)).json()
        # Half of the next set rated, then the rater leaves.
        client.post("/api/ratings", headers=auth(token),
                    json={"item_id": second["items"][0]["item_id"], "score": 5})
    with http_client(create_app(study, database)) as client:
        again = client.get("/api/next", headers=auth(token)).json()
        # The same set; the item rated before leaving is marked.
        assert [{**item, "rated": False} for item in again["items"]] == second["items"]
        assert [item["rated"] for item in again["items"]] == [True] + [False] * (
            len(second["items"]) - 1)
        assert again["done"] == len(first["items"]) + 1
        rate_set(client, token, again)
        third = client.get("/api/next", headers=auth(token)).json()
        assert {i["item_id"] for i in third["items"]}.isdisjoint(
            {i["item_id"] for i in first["items"] + second["items"]})


def test_raters_never_see_each_others_scores(client, database):
    first, second = tokens(database, 2)
    body = client.get("/api/next", headers=auth(first)).json()
    rate_set(client, first, body, score=5)
    other = client.get("/api/next", headers=auth(second))
    assert other.json()["done"] == 0 and "score" not in other.text
    assert all(set(item) == {"item_id", "image_url", "width", "height", "rated"}
               and item["rated"] is False for item in other.json()["items"])


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


def test_a_busy_or_bad_port_is_a_clear_error_not_a_traceback(study, tmp_path):
    """uvicorn would fail with a traceback; the command says what to do instead."""
    top = argparse.ArgumentParser()
    annotate_cli.register(top.add_subparsers())
    common = ["annotate", "serve", str(study), "--db", str(tmp_path / "r.sqlite")]
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        busy = holder.getsockname()[1]
        arguments = top.parse_args([*common, "--port", str(busy)])
        with pytest.raises(CommandError, match=f"cannot listen on 127.0.0.1:{busy}.*--port"):
            arguments.handler(arguments)
    arguments = top.parse_args([*common, "--port", "70000"])
    with pytest.raises(CommandError, match="1–65535"):
        arguments.handler(arguments)


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
                response = http.post(f"http://127.0.0.1:{port}/api/ratings", headers=auth(token),
                                     json={"item_id": item_id, "score": score})
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
                           headers=auth(raters[0]), timeout=10).json()
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


# -- hardening (issue 11, section 4) -------------------------------------------------------

@contextlib.contextmanager
def live(app):
    """``app`` served by uvicorn in a thread on a free loopback port; yields the port."""
    import uvicorn

    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [listener]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 15
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.02)
    try:
        yield listener.getsockname()[1]
    finally:
        server.should_exit = True
        thread.join(10)
        listener.close()


def raw_request(port: int, head: str, parts: list[bytes], *, timeout: float = 5) -> int:
    """Send a request head and body parts without finishing the body; the status code.

    The answer must close the connection (the rest of the body is never read).

    Fails (socket timeout) if the server waits for the rest of the body instead of
    answering. Stops sending as soon as the server answers or closes.
    """
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as connection:
        connection.sendall(head.replace("\n", "\r\n").encode())
        for part in parts:
            try:
                connection.sendall(part)
            except (BrokenPipeError, ConnectionResetError):
                break
        answer = b""
        while b"\r\n\r\n" not in answer:
            chunk = connection.recv(4096)
            if not chunk:
                break
            answer += chunk
    assert b"\r\nconnection: close\r\n" in answer.lower(), answer
    return int(answer.split(b" ", 2)[1])


def post_head(port: int, token: str, framing: str) -> str:
    return (f"POST /api/ratings HTTP/1.1\nHost: 127.0.0.1:{port}\n"
            f"Content-Type: application/json\nX-Advqa-Token: {token}\n{framing}\n")


def test_request_size_is_limited_and_the_token_checked_first(study, database):
    (token,) = tokens(database)
    huge = 150 * 1024 * 1024
    with live(create_app(study, database)) as port:
        # 150 MB announced, 1 KiB sent: the answer comes without the rest being read.
        assert raw_request(port, post_head(port, "not-a-token", f"Content-Length: {huge}\n"),
                           [b" " * 1024]) == 403
        assert raw_request(port, post_head(port, token, f"Content-Length: {huge}\n"),
                           [b" " * 1024]) == 413
        from advqa.annotate.app import MAX_BODY

        # Chunked, no length: refused once the limit is passed, before the body ends.
        chunk = b"%x\r\n%s\r\n" % (16 * 1024, b" " * 16 * 1024)
        assert raw_request(port, post_head(port, token, "Transfer-Encoding: chunked\n"),
                           [chunk] * (MAX_BODY // (16 * 1024) + 2)) == 413
        # A whole body over the limit, and one just under it (valid JSON, padded).
        item_id = httpx.get(f"http://127.0.0.1:{port}/api/next",
                            headers=auth(token)).json()["items"][0]["item_id"]
        rating = json.dumps({"item_id": item_id, "score": 4}).encode()
        for size, status in ((MAX_BODY + 1, 413), (MAX_BODY, 201)):
            response = httpx.post(f"http://127.0.0.1:{port}/api/ratings", headers={
                **auth(token), "content-type": "application/json"},
                content=rating + b" " * (size - len(rating)))
            assert response.status_code == status, response.text
    with RatingStore(database) as store:
        assert store.ratings()[["item_id", "score"]].values.tolist() == [[item_id, 4]]


def test_deeply_nested_json_is_a_400(client, database):
    (token,) = tokens(database)
    for depth in (1000, 10000):  # 10000 levels still fit in the body limit
        for opening, closing in (("[", "]"), ('{"a":', "}")):
            response = client.post("/api/ratings", headers=auth(token),
                                   content=opening * depth + "1" + closing * depth)
            assert response.status_code == 400, (depth, opening)
            assert response.json()["detail"] == "the body is JSON nested too deeply"


def test_the_token_moves_from_the_link_to_a_cookie(client, database):
    (token,) = tokens(database)
    link = client.get("/", params={"token": token}, follow_redirects=False)
    assert link.status_code == 303 and link.headers["location"] == "/"
    cookie = link.headers["set-cookie"]
    assert cookie.startswith(f"advqa_token={token};")
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie and "Path=/" in cookie
    # The cookie (a browser) or the header (a script) carry it; a URL never does.
    assert client.cookies["advqa_token"] == token
    assert client.get("/api/next").json()["total"] == sum(AES.values())
    client.cookies.clear()
    assert client.get("/api/next").status_code == 403
    assert client.get("/api/next", headers=auth(token)).status_code == 200
    for method, url in (("GET", f"/api/next?token={token}"),
                        ("POST", f"/api/ratings?token={token}")):
        response = client.request(method, url, headers=auth(token), json={})
        assert response.status_code == 400
        assert "never in a URL" in response.json()["detail"]
    # The page asks the API without a token of its own (the cookie goes along).
    script = client.get("/static/app.js").text
    assert 'api("/api/next")' in script and "location.search" not in script
    bad = client.get("/", params={"token": "a;b=c"}, follow_redirects=False)
    assert bad.status_code == 303 and 'advqa_token="";' in bad.headers["set-cookie"]


def test_tokens_never_reach_the_access_log(tmp_path):
    study = make_study(tmp_path / "study")
    database = tmp_path / "ratings.sqlite"
    (token,) = tokens(database)
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "advqa", "annotate", "serve", "--study", str(study), "--db",
         str(database), "--port", str(port)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env={**os.environ, **SOURCE})
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while True:
            assert server.poll() is None and time.monotonic() < deadline, "serve did not start"
            try:
                httpx.get(f"{base}/static/style.css", timeout=1)
                break
            except httpx.TransportError:
                time.sleep(0.2)
        statuses = [httpx.get(f"{base}/?token={token}", timeout=5).status_code,  # the link
                    httpx.get(f"{base}/api/next?token={token}&x=1", timeout=5).status_code,
                    httpx.get(f"{base}/api/next", headers=auth(token), timeout=5).status_code]
    finally:
        server.send_signal(signal.SIGINT)
        output = server.communicate(timeout=30)[0].decode()
    assert token not in output
    assert output.count("token=[redacted]") == 2, output
    assert "GET /api/next HTTP/1.1" in output  # the access log is on
    assert statuses == [303, 400, 200]


def test_http_details(client, database, study):
    (token,) = tokens(database)
    image = "/images/adversarial/ref_a__fgsm-linf-eps0"
    for method, url, allow in (("POST", "/api/next", "GET, HEAD"),
                               ("POST", "/api/session", "GET, HEAD"),
                               ("DELETE", image, "GET, HEAD"),
                               ("GET", "/api/ratings", "POST"),
                               ("GET", "/api/training", "POST"),
                               ("POST", "/", "GET, HEAD"),
                               ("PUT", "/static/app.js", "GET, HEAD")):
        response = client.request(method, url, headers=auth(token))
        assert response.status_code == 405, (method, url)
        # Starlette lists the methods in set order, which varies between runs.
        allowed = set(response.headers.get("allow", "").split(", "))
        assert allowed == set(allow.split(", ")), (method, url, response.headers)
    for url in ("/", "/api/next", "/api/session", image,
                "/images/reference/ref_a__fgsm-linf-eps0", "/static/app.js"):
        head, get = (client.request(method, url, headers=auth(token))
                     for method in ("HEAD", "GET"))
        assert head.status_code == get.status_code == 200, url
        assert head.headers["content-type"] == get.headers["content-type"]
    # Every answer, errors included, carries a strict policy: this server only, no inline.
    for url in ("/", "/api/next", image, "/static/app.js", "/nothing"):
        policy = client.get(url, headers=auth(token)).headers["content-security-policy"]
        directives = dict(part.strip().split(" ", 1) for part in policy.split(";"))
        assert directives["default-src"] == directives["img-src"] == "'self'", policy
        assert directives["script-src"] == directives["style-src"] == "'self'", policy
        assert directives["frame-ancestors"] == "'none'" and "unsafe" not in policy
    html = client.get("/").text
    assert re.findall(r"<script[^>]*>", html) == ['<script src="/static/app.js">']
    assert " style=" not in html and not re.search(r"\son[a-z]+=", html)
    # DNS rebinding: a foreign name for this machine is refused, whatever the path.
    for host in ("evil.example:8000", "evil.example", "127.0.0.1.evil.example:8000", ""):
        response = client.get("/static/app.js", headers={"host": host})
        assert response.status_code == 400, host
        assert "does not answer to the host" in response.json()["detail"]
    for host in ("localhost:8000", "[::1]:8000", "127.0.0.1"):
        assert client.get("/static/app.js", headers={"host": host}).status_code == 200, host
    # With the bound address given, other ports and names are refused too.
    app = create_app(study, database, allowed_hosts=allowed_hosts_for("127.0.0.1", 8000))
    with http_client(app) as bound:
        for host, status in (("127.0.0.1:8000", 200), ("localhost:8000", 200),
                             ("127.0.0.1:8001", 400), ("localhost", 400),
                             ("ratings.example.org", 400)):
            assert bound.get("/", headers={"host": host}).status_code == status, host
    app = create_app(study, database, allowed_hosts=["ratings.example.org"])
    with http_client(app) as proxied:
        assert proxied.get("/", headers={"host": "ratings.example.org"}).status_code == 200
        assert proxied.get("/").status_code == 400
    with pytest.raises(ValueError, match="not a host"):
        create_app(study, database, allowed_hosts=["http://x/y"])


ODD_IDS = ["a#1", "b?x=2", "c\\3", "d/4", "e 5%20", "f&g=ü"]


def odd_study(root: Path) -> Path:
    """A study whose item ids hold characters with a meaning in URLs."""
    (root / "images").mkdir(parents=True)
    generator = torch.Generator().manual_seed(1)
    save_png(torch.rand(3, 5, 6, generator=generator), root / "images" / "ref.png")
    rows = []
    for index, identifier in enumerate(ODD_IDS):
        save_png(torch.rand(3, 5, 6, generator=generator), root / "images" / f"ae{index}.png")
        rows.append({"id": identifier, "reference_path": "images/ref.png",
                     "adversarial_path": f"images/ae{index}.png", "image": "ref"})
    pd.DataFrame(rows).to_parquet(root / "manifest.parquet", index=False)
    return root


def test_image_urls_are_percent_encoded(tmp_path):
    study = odd_study(tmp_path / "study")
    database = tmp_path / "ratings.sqlite"
    (token,) = tokens(database)
    # A real server: Starlette's TestClient decodes a path twice, uvicorn once.
    with live(create_app(study, database)) as port, httpx.Client(
            base_url=f"http://127.0.0.1:{port}") as client:
        seen = set()
        while (body := client.get("/api/next", headers=auth(token)).json())["items"]:
            for item in body["items"]:
                url = item["image_url"]
                assert url.startswith("/images/adversarial/") and "#" not in url
                assert "?" not in url and "\\" not in url and url.count("/") == 3, url
                index = ODD_IDS.index(item["item_id"])
                response = client.get(url)
                assert response.status_code == 200, url
                assert response.content == (study / "images" / f"ae{index}.png").read_bytes()
                seen.add(item["item_id"])
            reference = client.get(body["reference"]["image_url"])
            assert reference.content == (study / "images" / "ref.png").read_bytes()
            rate_set(client, token, body)
    assert seen == set(ODD_IDS)


def test_unreadable_images_are_skipped_and_listed(tmp_path, capsys, monkeypatch):
    study = make_study(tmp_path / "study")
    manifest = pd.read_parquet(study / "manifest.parquet")
    header_cut = study / manifest.adversarial_path[0]  # an AE of ref_a
    data_cut = study / "images" / "ref" / "ref_c.png"  # the reference of 5 AEs
    header_cut.write_bytes(header_cut.read_bytes()[:20])
    data_cut.write_bytes(data_cut.read_bytes()[:-30])
    database = tmp_path / "ratings.sqlite"
    (token,) = tokens(database)
    with pytest.warns(UserWarning, match=r"skipped 6 of 14 items whose image cannot be read"):
        app = create_app(study, database)
    assert app.state.study.unreadable == {
        str(header_cut.relative_to(study)): "truncated PNG (no end chunk)",
        "images/ref/ref_c.png": "truncated PNG (no end chunk)"}
    assert sorted(app.state.study.skipped) == sorted(
        [manifest.id[0], *(f"ref_c__fgsm-linf-eps{i}" for i in range(5))])
    with http_client(app) as client:
        served = []
        while (body := client.get("/api/next", headers=auth(token)).json())["items"]:
            served += [item["item_id"] for item in body["items"]]
            rate_set(client, token, body)
        assert sorted(served) == sorted(app.state.study.items) and len(served) == 8
        assert client.get(f"/images/adversarial/{manifest.id[0]}").status_code == 404
    # `serve` lists them and serves the rest.
    ran = []
    monkeypatch.setattr("advqa.annotate.app.serve", lambda app, **where: ran.append(where))
    top = argparse.ArgumentParser()
    annotate_cli.register(top.add_subparsers())
    arguments = top.parse_args(["annotate", "serve", "--study", str(study), "--db",
                                str(database), "--port", "8123"])
    assert arguments.handler(arguments) == 0 and ran == [{"host": "127.0.0.1", "port": 8123}]
    err = capsys.readouterr().err
    assert "skipped 6 item(s) whose image cannot be read" in err
    assert f"  {header_cut.relative_to(study)}: truncated PNG (no end chunk)" in err
    assert "serving 8 item(s)" in err and "127.0.0.1:8123, localhost:8123" in err
    # Nothing readable: a clear error, no traceback.
    for path in (study / "images" / "ref").glob("*.png"):
        path.write_bytes(b"not a png")
    with pytest.raises(CommandError, match=r"no item of .* can be served: every one of the 14"
                       r" items has an unreadable image \(images/ref/ref_a.png: not a PNG"):
        arguments.handler(arguments)


def test_redaction_filter_and_allowed_hosts():
    record = logging.LogRecord("uvicorn.access", logging.INFO, __file__, 1,
                               '%s - "%s %s HTTP/%s" %d',
                               ("127.0.0.1:5", "GET", "/?token=abc-_1&x=2", "1.1", 303), None)
    assert RedactTokens().filter(record)
    assert record.getMessage() == '127.0.0.1:5 - "GET /?token=[redacted]&x=2 HTTP/1.1" 303'
    assert allowed_hosts_for("::1", 9000, ["r.example.org"]) == [
        "127.0.0.1:9000", "localhost:9000", "[::1]:9000", "r.example.org"]


# -- the redesigned page's API (issue 16, section 2) -----------------------------------------

def with_strength(study: Path) -> Path:
    """Give the fake study's AEs a strength: eps index / 255 (ref_b's eps6 is the top)."""
    manifest = pd.read_parquet(study / "manifest.parquet")
    manifest["strength"] = [int(i.rsplit("eps", 1)[1]) / 255 for i in manifest.id]
    manifest.to_parquet(study / "manifest.parquet", index=False)
    return study


def test_session_describes_the_rater_settings_and_training(tmp_path):
    study = with_strength(make_study(tmp_path / "study"))
    database = tmp_path / "ratings.sqlite"
    first, second = tokens(database, 2)
    app = create_app(study, database, break_minutes=12.5)
    with http_client(app) as client:
        body = client.get("/api/session", headers=auth(first)).json()
        assert body["rater"] == "rater-001"
        assert (body["done"], body["total"]) == (0, sum(AES.values()))
        assert body["settings"] == {"break_minutes": 12.5, "training": True, "flicker": True}
        trials = body["training"]
        assert [t["anchor"] for t in trials] == ["identical", "strongest", "practice"]
        assert [t["expected"] for t in trials] == [1, 5, None]
        assert not any(t["done"] for t in trials)
        # The identical pair is the strongest AE's reference beside itself; the strongest
        # AE is the one of the highest strength; item ids are not sent.
        top = "ref_b__fgsm-linf-eps6"
        assert trials[0]["image_url"] == trials[0]["reference"]["image_url"] == \
            f"/images/reference/{top}"
        assert (trials[0]["width"], trials[0]["height"]) == (9, 6)
        assert trials[1]["image_url"] == f"/images/adversarial/{top}"
        assert trials[1]["reference"] == trials[0]["reference"]
        assert (trials[1]["width"], trials[1]["height"]) == (11, 7)
        assert "item_id" not in json.dumps(trials)
        for trial in trials:
            for url in (trial["image_url"], trial["reference"]["image_url"]):
                assert client.get(url).status_code == 200
        # Scoring an anchor marks it done for this rater only.
        response = client.post("/api/training", headers=auth(first),
                               json={"anchor": "identical", "score": 1})
        assert response.status_code == 201
        assert response.json() == {"stored": True, "training": True}
        done = {t["anchor"]: t["done"] for t in
                client.get("/api/session", headers=auth(first)).json()["training"]}
        assert done == {"identical": True, "strongest": False, "practice": False}
        assert not any(t["done"] for t in
                       client.get("/api/session", headers=auth(second)).json()["training"])
    assert "ranked by strength" in app_settings_line(app)


def app_settings_line(app) -> str:
    from advqa.annotate.app import describe_settings

    return describe_settings(app)


def test_training_scores_are_kept_apart_and_never_exported(tmp_path):
    from advqa.annotate.export import export_mos

    study = with_strength(make_study(tmp_path / "study"))
    database = tmp_path / "ratings.sqlite"
    (token,) = tokens(database)
    with http_client(create_app(study, database)) as client:
        for anchor, score in (("identical", 2), ("strongest", 5), ("practice", 3),
                              ("strongest", 4)):  # again: replaces
            response = client.post("/api/training", headers=auth(token),
                                   json={"anchor": anchor, "score": score})
            assert response.status_code == 201, response.text
        body = client.get("/api/next", headers=auth(token)).json()
        assert body["done"] == 0  # training is not progress
        rate_set(client, token, body, score=1)
        cases = [({"anchor": "nothing", "score": 3}, 404),
                 ({"anchor": "identical", "score": 6}, 422),
                 ({"anchor": "identical", "score": True}, 422),
                 ({"anchor": 1, "score": 3}, 422),
                 ({"score": 3}, 422),
                 ({"anchor": "identical", "score": 3, "token": token}, 422),
                 (["identical"], 422)]
        for payload, status in cases:
            response = client.post("/api/training", headers=auth(token), json=payload)
            assert response.status_code == status, (payload, response.text)
            assert response.json()["detail"]
        assert "anchors: identical, strongest, practice" in client.post(
            "/api/training", headers=auth(token),
            json={"anchor": "nothing", "score": 3}).json()["detail"]
    with RatingStore(database) as store:
        training = store.training_ratings()
        ratings = store.ratings()
    assert list(training.columns) == ["rater", "anchor", "item_id", "score", "updated"]
    assert training.set_index("anchor").score.to_dict() == {
        "identical": 2, "practice": 3, "strongest": 4}
    assert training.set_index("anchor").at["strongest", "item_id"] == "ref_b__fgsm-linf-eps6"
    # The ratings table, and so every export, holds the study's scores only.
    assert sorted(ratings.item_id) == sorted(item["item_id"] for item in body["items"])
    assert set(ratings.score) == {1}
    mos = export_mos(database, tmp_path / "mos.csv", screen=False).table
    assert set(mos.item_id) == set(ratings.item_id) and set(mos.mos) == {1.0}


def test_without_training_no_anchor_is_offered_or_stored(study, database):
    (token,) = tokens(database)
    app = create_app(study, database, training=False, flicker=False, break_minutes=0)
    with http_client(app) as client:
        body = client.get("/api/session", headers=auth(token)).json()
        assert body["training"] == []
        assert body["settings"] == {"break_minutes": 0.0, "training": False, "flicker": False}
        response = client.post("/api/training", headers=auth(token),
                               json={"anchor": "identical", "score": 1})
        assert response.status_code == 404
        assert "training is off" in response.json()["detail"]
    assert app_settings_line(app) == ("training: off; break reminder: off; "
                                      "flicker view: off")


def test_anchors_by_score_strength_or_neither(tmp_path):
    from advqa.annotate.app import Anchor, Study, pick_anchors

    study = make_study(tmp_path / "study")
    # No strength, no scores: the identical pair and a practice AE, nothing called strong.
    plain = Study(study)
    assert plain.ranked_by is None
    assert [(a.kind, a.expected) for a in plain.anchors] == [("identical", 1),
                                                              ("practice", None)]
    assert plain.anchors[0].item_id == plain.anchors[1].item_id
    # The manifest's strength: the highest is the most visible.
    with_strength(study)
    ranked = Study(study)
    assert ranked.ranked_by == "strength"
    assert ranked.anchor("strongest") == Anchor("strongest", "ref_b__fgsm-linf-eps6", 5)
    # Scores beat strength: the lowest AdvDSS (then SSIM) is the most visible.
    ids = sorted(pd.read_parquet(study / "manifest.parquet").id)
    scores = pd.DataFrame({"id": ids, "ssim": [0.5] * len(ids),
                           "advdss": [0.9 - 0.01 * n for n in range(len(ids))]})
    scores.loc[3, "ssim"] = 0.1
    scores.to_parquet(study / "scores.parquet", index=False)
    by_advdss = Study(study)
    assert by_advdss.ranked_by == "advdss"
    assert by_advdss.anchor("strongest").item_id == ids[-1]
    assert by_advdss.anchor("practice").item_id == ids[(len(ids) - 1) // 2]
    scores.drop(columns="advdss").to_parquet(study / "scores.parquet", index=False)
    by_ssim = Study(study)
    assert by_ssim.ranked_by == "ssim" and by_ssim.anchor("strongest").item_id == ids[3]
    # Degenerate rankings.
    assert pick_anchors([], ranked=True) == []
    assert [a.kind for a in pick_anchors(["x"], ranked=True)] == ["identical", "strongest"]


def test_rating_context_is_stored_with_the_score_and_checked(client, database):
    (token,) = tokens(database)
    ids = [item["item_id"] for item in
           client.get("/api/next", headers=auth(token)).json()["items"]]
    for payload in ({"item_id": ids[0], "score": 2, "flicker": True, "response_ms": 1500},
                    {"item_id": ids[1], "score": 3, "flicker": False, "response_ms": None},
                    {"item_id": ids[0], "score": 4, "flicker": False, "response_ms": 900}):
        response = client.post("/api/ratings", headers=auth(token), json=payload)
        assert response.status_code == 201 and response.json() == {"stored": True}
    for payload in ({"flicker": "yes"}, {"flicker": 1}, {"response_ms": -1},
                    {"response_ms": 2.5}, {"response_ms": True},
                    {"response_ms": 24 * 3600 * 1000 + 1}):
        response = client.post("/api/ratings", headers=auth(token),
                               json={"item_id": ids[1], "score": 5, **payload})
        assert response.status_code == 422, payload
        assert response.json()["detail"]
    with RatingStore(database) as store:
        context = store.rating_context().set_index("item_id")
        assert context.flicker.to_dict() == {ids[0]: False, ids[1]: False}
        assert context.response_ms.to_dict()[ids[0]] == 900
        assert pd.isna(context.response_ms[ids[1]])
        assert store.ratings().set_index("item_id").score.to_dict() == {ids[0]: 4, ids[1]: 3}
    # Rating again without context drops the old context: it described another score.
    client.post("/api/ratings", headers=auth(token), json={"item_id": ids[0], "score": 1})
    with RatingStore(database) as store:
        assert list(store.rating_context().item_id) == [ids[1]]
        assert list(store.ratings().columns) == ["rater", "item_id", "score", "updated"]


def test_new_endpoints_refuse_bad_tokens_clearly(client, database):
    (token,) = tokens(database)
    for headers in ({}, auth(""), auth("not-a-token"), auth("a" * 32)):
        for response in (client.get("/api/session", headers=headers),
                         client.post("/api/training", headers=headers,
                                     json={"anchor": "identical", "score": 1})):
            assert response.status_code == 403, headers
            detail = response.json()["detail"]
            assert detail.startswith(("missing token", "unknown token")), detail
            assert "link" in detail
    for method, url in (("GET", f"/api/session?token={token}"),
                        ("POST", f"/api/training?token={token}")):
        response = client.request(method, url, headers=auth(token), json={})
        assert response.status_code == 400 and "never in a URL" in response.json()["detail"]


def test_break_minutes_are_checked_and_reach_the_page(study, database, monkeypatch, capsys):
    for bad in (-1, float("nan"), float("inf"), 1441, "soon", None):
        with pytest.raises(ValueError, match="break minutes"):
            create_app(study, database, break_minutes=bad)
    monkeypatch.setenv("ADVQA_STUDY", str(study))
    monkeypatch.setenv("ADVQA_DB", str(database))
    monkeypatch.setenv("ADVQA_BREAK_MINUTES", "0.5")
    from advqa.annotate.app import app_from_environment

    assert app_from_environment().state.settings["break_minutes"] == 0.5
    # `serve --break-minutes --no-training --no-flicker` reach the app; a bad value is a
    # plain error.
    ran = []
    monkeypatch.setattr("advqa.annotate.app.serve", lambda app, **where: ran.append(app))
    top = argparse.ArgumentParser()
    annotate_cli.register(top.add_subparsers())
    common = ["annotate", "serve", "--study", str(study), "--db", str(database)]
    arguments = top.parse_args([*common, "--break-minutes", "7", "--no-training",
                                "--no-flicker"])
    assert arguments.handler(arguments) == 0
    assert ran[0].state.settings == {"break_minutes": 7.0, "training": False,
                                     "flicker": False}
    assert "training: off; break reminder every 7 min; flicker view: off" in \
        capsys.readouterr().err
    arguments = top.parse_args(common)
    assert arguments.handler(arguments) == 0
    assert ran[1].state.settings == {"break_minutes": 20.0, "training": True,
                                     "flicker": True}
    assert "training: 2 anchors before a rater's first item (identical, practice; no " \
        "ranking found); break reminder every 20 min; flicker view: on" in \
        capsys.readouterr().err
    arguments = top.parse_args([*common, "--break-minutes", "-3"])
    with pytest.raises(CommandError, match="break minutes is from 0"):
        arguments.handler(arguments)
