#!/usr/bin/env python3
"""API fuzzing from the OpenAPI document (issue 11).

Starts a real instance of the `iobufferpro` binary on loopback, gives it users of every role
and channel pairs with buffered messages (so paths carry real ids as well as garbage), logs in
as each role on the portal that role's pages use, and runs schemathesis against the served
OpenAPI document for every operation. Fails on any server error (5xx) or any response that
the document does not describe (status code, content type, headers, body schema, the JSON of
each server-sent event), on a 405 without Allow for an undocumented method, on a resource
still there after its DELETE or missing after its POST, on a panic or internal error in the
instance's log, and when a run lost its session part way (it would then have fuzzed as nobody
and passed).

    .ci/api-fuzz                      # what CI runs (installs schemathesis, builds the binary)
    python3 .ci/api_fuzz.py --bin target/debug/iobufferpro --st /opt/schemathesis/bin/st

Runs, in order (each an `st run` of its own, with its own session):
  1. every role on its portal: anonymous, viewer, operator, admin, and the relay account with
     its relay token (it has no portal session: its portal login is refused); the Operations
     Portal for the tags `pairs`, `messages` and `relay`, the Management Dashboard for
     `session`, `system` and `users`;
  2. logout (DELETE /api/v1/session), once per role with a throwaway session: its first call
     ends the session the other runs fuzz with, so it cannot share one;
  3. the two logins (POST /api/v1/session, POST /api/v1/relay/session): failed logins slow
     down every further login from the address (127.0.0.1), so they run last, when no run
     needs to log in any more.
Nothing is left out: every documented operation is fuzzed in one of these runs. The relay
upgrade (GET /api/v1/relay/channels/{channel_id}/{mode}) is fuzzed too, but only up to the
upgrade: schemathesis sends no `Upgrade: iobp-relay/1` header, so the answers are 400, 401,
403, 404 or 409; the relay protocol itself is fuzzed by `cargo fuzz run relay_frames`.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import shlex
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

# The fuzzing users (fz-<role>). The admin run never changes or deletes them, which would end
# the sessions of the runs that use them: their names are in no dictionary below, and a hook
# (HOOKS) sends any request that names one to a victim instead.
PASSWORD = "fuzz-password-1"
ROLES = ["viewer", "operator", "relay", "admin"]
# Roles with portal sessions; a relay account has none (its login is refused with 403): it is
# fuzzed with its relay token (Authorization: Bearer) on the relay routes instead.
PORTAL_ROLES = ["viewer", "operator", "admin"]
# The channel the fuzzing relay user is granted (push into).
RELAY_CHANNEL = "fz-channel"
# Users the admin run may change and delete with real names.
VICTIMS = {"fz-victim-a": "viewer", "fz-victim-b": "operator", "fz-victim-c": "relay"}
# Pairs: one that delivers (its messages are done), one whose destination is down (pending),
# one stopped, and one that the operator and admin runs may delete with `?confirm=`.
FLOW, HELD, STOPPED, DOOMED = "fz-flow", "fz-held", "fz-stopped", "fz-doomed"
MESSAGES = 12

CHECKS = ",".join(
    [
        # What issue 11 asks for: no 5xx, nothing the document does not describe.
        "not_a_server_error",
        "status_code_conformance",
        "content_type_conformance",
        "response_headers_conformance",
        "response_schema_conformance",
        # Cheap and deterministic beyond that: undocumented methods get 405 with Allow; a
        # deleted resource is gone; a created one can be read.
        "unsupported_method",
        "allow_header_conformance",
        "use_after_free",
        "ensure_resource_availability",
    ]
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Api:
    """A minimal client for one portal, keeping one session."""

    def __init__(self, port: int, portal: str):
        self.port = port
        self.cookie_name = f"iobp_{portal}_session_{port}"
        self.cookie: str | None = None
        self.csrf: str | None = None

    def call(self, method: str, path: str, body=None) -> tuple[int, object]:
        c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        headers = {"Host": f"127.0.0.1:{self.port}"}
        if self.cookie:
            headers["Cookie"] = f"{self.cookie_name}={self.cookie}"
        if self.csrf:
            headers["X-CSRF-Token"] = self.csrf
        data = None
        if body is not None:
            data = json.dumps(body)
            headers["Content-Type"] = "application/json"
        c.request(method, path, body=data, headers=headers)
        r = c.getresponse()
        raw = r.read()
        for k, v in r.getheaders():
            if k.lower() == "set-cookie" and v.startswith(self.cookie_name + "="):
                self.cookie = v.split(";", 1)[0].split("=", 1)[1] or None
        c.close()
        try:
            return r.status, json.loads(raw) if raw else None
        except ValueError:
            return r.status, raw.decode(errors="replace")

    def must(self, method: str, path: str, body=None, status=(200, 201, 204)):
        st, b = self.call(method, path, body)
        if st not in status:
            sys.exit(f"setup: {method} {path} answered {st}: {b}")
        return b

    def login(self, user: str, password: str) -> dict:
        self.cookie = self.csrf = None
        s = self.must("POST", "/api/v1/session", {"username": user, "password": password})
        self.csrf = s["csrf_token"]
        return s

    def headers(self) -> list[str]:
        return [f"Cookie: {self.cookie_name}={self.cookie}", f"X-CSRF-Token: {self.csrf}"]


class Sink:
    """A receiving application: accepts connections and reads until they close."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen()
        self.port = self.sock.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._drain, args=(c,), daemon=True).start()

    @staticmethod
    def _drain(c: socket.socket):
        with c:
            while c.recv(65536):
                pass


def pair(pid: str, src_port: int, dst_port: int, enabled: bool = True) -> dict:
    return {
        "id": pid,
        "name": f"fuzz {pid}",
        "enabled": enabled,
        "source": {"type": "tcp_server", "host": "127.0.0.1", "port": src_port, "framing": {"type": "line"}},
        "destination": {"type": "tcp_client", "host": "127.0.0.1", "port": dst_port, "framing": {"type": "line"}},
    }


def send_lines(port: int, n: int, tag: str):
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        for i in range(n):
            s.sendall(f"MSH|^~\\&|FUZZ|{tag}|{i}\n".encode())


def wait_for(what: str, f, secs: float = 20):
    deadline = time.monotonic() + secs
    while not f():
        if time.monotonic() > deadline:
            sys.exit(f"setup: timed out waiting for {what}")
        time.sleep(0.05)


def start_instance(binary: str, data: Path, log: Path) -> tuple[subprocess.Popen, int, int]:
    ops, mgmt = free_port(), free_port()
    while mgmt == ops:
        mgmt = free_port()
    child = subprocess.Popen(
        [binary, "run", "--data-dir", str(data),
         "--ops-listen", f"127.0.0.1:{ops}", "--mgmt-listen", f"127.0.0.1:{mgmt}"],
        stdout=subprocess.PIPE, stderr=log.open("wb"), env={**os.environ, "IOBP_LOG": "warn"},
        text=True,
    )
    for _ in range(5):
        line = child.stdout.readline()
        if "running" in line or not line:
            break
    if "running" not in line:
        child.kill()
        sys.exit(f"the instance did not start ({line!r}); its log: {log}")
    # Keep draining stdout so the instance never writes into a full pipe.
    threading.Thread(target=lambda: [None for _ in child.stdout], daemon=True).start()
    return child, ops, mgmt


def setup(ops: int, mgmt: int, data: Path, sink: Sink) -> dict:
    """Users of every role, pairs with messages; returns the ids the dictionaries use."""
    admin = Api(mgmt, "mgmt")
    first = (data / "initial-admin-password.txt").read_text()
    initial = next(line[len("password: "):] for line in first.splitlines() if line.startswith("password: "))
    admin.login("admin", initial)
    s = admin.must("POST", "/api/v1/session/password",
                   {"current_password": initial, "new_password": PASSWORD + "-admin"})
    admin.csrf = s["csrf_token"]
    for role in ROLES:
        grants = [{"channel_id": RELAY_CHANNEL, "direction": "push"}] if role == "relay" else []
        admin.must("POST", "/api/v1/users",
                   {"username": f"fz-{role}", "password": PASSWORD, "role": role, "must_change_password": False,
                    "relay_grants": grants})
    for name, role in VICTIMS.items():
        admin.must("POST", "/api/v1/users",
                   {"username": name, "password": PASSWORD, "role": role, "must_change_password": False})
    ports = {p: free_port() for p in (FLOW, HELD, STOPPED, DOOMED)}
    closed = free_port()  # nothing listens there: the held pair's messages stay pending
    admin.must("POST", "/api/v1/pairs", pair(FLOW, ports[FLOW], sink.port))
    admin.must("POST", "/api/v1/pairs", pair(HELD, ports[HELD], closed))
    admin.must("POST", "/api/v1/pairs", pair(DOOMED, ports[DOOMED], sink.port))
    admin.must("POST", "/api/v1/pairs", pair(STOPPED, ports[STOPPED], sink.port))

    def counts(pid):
        return admin.must("GET", f"/api/v1/pairs/{pid}")["status"]["counts"]

    for pid in (FLOW, HELD, STOPPED):
        wait_for(f"{pid} listening", lambda pid=pid: _connectable(ports[pid]))
        send_lines(ports[pid], MESSAGES, pid)
    wait_for("the flow pair to deliver", lambda: counts(FLOW)["sent"] >= MESSAGES)
    wait_for("the held pair to store", lambda: counts(HELD)["received"] >= MESSAGES)
    wait_for("the stopped pair to deliver", lambda: counts(STOPPED)["sent"] >= MESSAGES)
    admin.must("POST", f"/api/v1/pairs/{STOPPED}/stop")
    page = admin.must("GET", f"/api/v1/pairs/{FLOW}/messages?limit=500")
    seqs = sorted({m["seq"] for m in page["messages"]})
    return {"seqs": seqs}


def _connectable(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
        return True
    except OSError:
        return False


def toml_str(s: str) -> str:
    return json.dumps(s)


def config(workdir: Path, ids: dict, examples: int, seed: int) -> Path:
    """The schemathesis configuration: budgets, the hook, and dictionaries of real values that
    path and query parameters take half of the time (the rest is generated)."""
    pair_ids = [FLOW, HELD, STOPPED, DOOMED]
    usernames = list(VICTIMS) + ["admin"]
    seqs = ids["seqs"] + [ids["seqs"][-1] + 1000]
    hooks = workdir / "hooks.py"
    hooks.write_text(HOOKS.format(protected=repr({f"fz-{r}" for r in ROLES}), victim=repr(next(iter(VICTIMS)))))
    text = f"""
seed = {seed}
workers = 1
request-timeout = 20
max-stream-events = 1

hooks = {toml_str(str(hooks))}

[generation]
max-examples = {examples}
database = "none"

[dictionaries.pair_ids]
values = [{", ".join(map(toml_str, pair_ids))}]
[dictionaries.doomed]
values = [{toml_str(DOOMED)}]
[dictionaries.usernames]
values = [{", ".join(map(toml_str, usernames))}]
[dictionaries.seqs]
values = [{", ".join(map(str, seqs))}]
[dictionaries.modes]
values = ["push", "pull"]

[parameters]
"path.id" = {{ dictionary = "pair_ids", probability = 0.5 }}
"query.pair" = {{ dictionary = "pair_ids", probability = 0.5 }}
"query.confirm" = {{ dictionary = "doomed", probability = 0.5 }}
"path.username" = {{ dictionary = "usernames", probability = 0.5 }}
"path.seq" = {{ dictionary = "seqs", probability = 0.5 }}
"path.mode" = {{ dictionary = "modes", probability = 0.5 }}
"path.channel_id" = {{ dictionary = "pair_ids", probability = 0.5 }}
"""
    path = workdir / "schemathesis.toml"
    path.write_text(text)
    return path


# The admin run may change and delete users, and its stateful phase follows links (the user
# name of GET /api/v1/session, the names GET /api/v1/users lists): changing a fuzzing account
# would end the sessions the runs use, so requests for one go to a victim instead.
HOOKS = """
import schemathesis

PROTECTED = {protected}


@schemathesis.hook
def before_call(context, case, kwargs):
    if (case.path_parameters or {{}}).get("username") in PROTECTED:
        case.path_parameters["username"] = {victim}
"""


class Runner:
    def __init__(self, st: str, cfg: Path, workdir: Path, verbose: bool, only: list[str]):
        self.st, self.cfg, self.workdir, self.verbose, self.only = st, cfg, workdir, verbose, only
        self.checks = CHECKS
        self.failed: list[str] = []
        self.times: list[tuple[str, float]] = []

    def run(self, name: str, port: int, headers: list[str], filters: list[str]):
        if self.only and not any(o in name for o in self.only):
            return
        t0 = time.monotonic()
        report = self.workdir / f"report-{name}"
        cmd = [self.st, "--config-file", str(self.cfg), "run",
               f"http://127.0.0.1:{port}/api/openapi.json",
               "--url", f"http://127.0.0.1:{port}",
               "--checks", self.checks, "--no-color",
               "--report", "junit", "--report-dir", str(report)]
        for h in headers:
            cmd += ["-H", h]
        cmd += filters
        print(f"\n==== api-fuzz: {name} (port {port})", flush=True)
        if self.verbose or not self.times:
            # The command, for the record (the session's secrets left out).
            shown = [c.split(":")[0] + ": ..." if prev == "-H" else c for prev, c in zip([""] + cmd, cmd)]
            print("$ " + " ".join(shlex.quote(c) for c in shown), flush=True)
        r = subprocess.run(cmd, cwd=self.workdir, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        out = r.stdout
        # The summary is enough when all is well; the whole output when not.
        if r.returncode != 0:
            self.failed.append(name)
        if r.returncode != 0 or self.verbose:
            print(out)
        else:
            tail = out.strip().splitlines()[-8:]
            print("\n".join(tail))
        self.times.append((name, time.monotonic() - t0))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bin", required=True, help="the iobufferpro binary")
    ap.add_argument("--st", default="st", help="schemathesis' st command")
    ap.add_argument("--examples", type=int, default=int(os.environ.get("IOBP_API_FUZZ_EXAMPLES", "50")),
                    help="max examples per operation and run (IOBP_API_FUZZ_EXAMPLES)")
    ap.add_argument("--seed", type=int, default=int(os.environ.get("IOBP_API_FUZZ_SEED", "11")))
    ap.add_argument("--keep", action="store_true", help="keep the work directory")
    ap.add_argument("-v", "--verbose", action="store_true", help="print schemathesis' whole output")
    ap.add_argument("--checks", help="schemathesis checks instead of the five of issue 11 (exploring)")
    ap.add_argument("--only", action="append", default=[], metavar="NAME",
                    help="only the runs whose name contains NAME (repeatable; for debugging)")
    args = ap.parse_args()

    t0 = time.monotonic()
    workdir = Path(tempfile.mkdtemp(prefix="iobp-api-fuzz-"))
    data = workdir / "data"
    log = workdir / "instance.log"
    child, ops, mgmt = start_instance(args.bin, data, log)
    try:
        sink = Sink()
        ids = setup(ops, mgmt, data, sink)
        cfg = config(workdir, ids, args.examples, args.seed)
        runner = Runner(args.st, cfg, workdir, args.verbose, args.only)
        if args.checks:
            runner.checks = args.checks

        ops_tags = ["--include-tag", "pairs", "--include-tag", "messages", "--include-tag", "relay"]
        mgmt_tags = ["--include-tag", "session", "--include-tag", "system", "--include-tag", "users"]
        # Logout and the logins have runs of their own (see the module's comment).
        logout = ["--include-name", "DELETE /api/v1/session"]
        logins = ["--include-name", "POST /api/v1/session", "--include-name", "POST /api/v1/relay/session"]
        no_session_ops = [x.replace("--include-", "--exclude-") for x in logout + logins]

        # Sessions first (every login happens before any failed one).
        sessions = {}
        for role in PORTAL_ROLES:
            for portal, port in (("ops", ops), ("mgmt", mgmt)):
                a = Api(port, portal)
                a.login(f"fz-{role}", PASSWORD)
                sessions[(role, portal)] = a
        throwaway = {}
        for role in PORTAL_ROLES:
            a = Api(mgmt, "mgmt")
            a.login(f"fz-{role}", PASSWORD)
            throwaway[role] = a
        relay = Api(ops, "ops")
        token = relay.must("POST", "/api/v1/relay/session", {"username": "fz-relay", "password": PASSWORD})["token"]

        # 1. Every role on its portal; admin last, as it changes users and settings. The relay
        # account with its token, on everything of the Operations Portal.
        runner.run("relay-token-ops", ops, [f"Authorization: Bearer {token}"], ops_tags + no_session_ops)
        for role in ["anonymous"] + PORTAL_ROLES:
            for portal, port, tags in (("ops", ops, ops_tags), ("mgmt", mgmt, mgmt_tags)):
                headers = [] if role == "anonymous" else sessions[(role, portal)].headers()
                runner.run(f"{role}-{portal}", port, headers, tags + no_session_ops)
        # 2. Logout, with throwaway sessions (and without one).
        for role in ["anonymous"] + PORTAL_ROLES:
            headers = [] if role == "anonymous" else throwaway[role].headers()
            runner.run(f"{role}-logout", mgmt, headers, logout)
        # Every session lived through its run (a run whose session ended would have fuzzed as
        # anonymous from then on, and still passed), and the accounts kept their roles.
        for (role, portal), a in sessions.items():
            code, _ = a.call("GET", "/api/v1/session")
            if code == 401:
                runner.failed.append(f"the {role} session on {portal} ended during the runs")
        code, users = sessions[("admin", "mgmt")].call("GET", "/api/v1/users")
        roles = {u["username"]: u["role"] for u in users} if code == 200 else {}
        for role in ROLES:
            if roles.get(f"fz-{role}") != role:
                runner.failed.append(f"fz-{role} was changed or deleted by a run")
        # 3. The logins, last.
        runner.run("logins", ops, [], logins)

        # The instance must still be alive and well.
        code = child.poll()
        if code is not None:
            runner.failed.append(f"the instance exited ({code})")
        else:
            st, _ = Api(ops, "ops").call("GET", "/readyz")
            if st != 200:
                runner.failed.append(f"/readyz answered {st}")
    finally:
        child.terminate()
        try:
            child.wait(20)
        except subprocess.TimeoutExpired:
            child.kill()
    # A panic, or a 500 that no check saw (ApiError::internal logs each one).
    bad = [line for line in log.read_text(errors="replace").splitlines()
           if "panicked" in line or "internal error" in line]
    if bad:
        runner.failed.append("the instance's log:\n" + "\n".join(bad[:10]))
    print("\n==== api-fuzz: times")
    for name, secs in runner.times:
        print(f"  {name:<20} {secs:6.1f} s")
    print(f"  {'total':<20} {time.monotonic() - t0:6.1f} s")
    if runner.failed:
        print(f"\napi-fuzz FAILED: {', '.join(runner.failed)}\n(work directory kept: {workdir})")
        return 1
    print(f"\napi-fuzz: {len(runner.times)} runs, 0 server errors, 0 responses that violate the document")
    if not args.keep:
        shutil.rmtree(workdir, ignore_errors=True)
    else:
        print(f"work directory: {workdir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
