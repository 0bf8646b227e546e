"""A fork server for the kill-and-resume test: pays Python's import cost (torch, transformers, peft: ~5 s
on 2 loaded cores) once, then runs ``medner.cli.main(argv)`` in a fresh forked process per request and
SIGKILLs it after a given delay. The forked child is an ordinary separate process running the real CLI code
path from its start (argument parsing, model loading, reading, writing); only the imports are inherited.
No torch operation runs in this server before forking, so no thread pool is inherited.

Protocol (JSON lines): prints ``{"ready": true}``; then for each request line
``{"argv": [...], "log": path, "kill_after": seconds|null, "ledger": path|null, "kill_at_shards": int|null}``
it forks and SIGKILLs the child, if still running, either ``kill_after`` seconds after the fork, or (when
``kill_at_shards`` is given) ``kill_after`` seconds after the ledger first lists ``kill_at_shards`` completed
shards; it reaps the child and prints ``{"pid": .., "killed": bool, "rc": int, "seconds": float,
"first_shard_s": float|null}`` (the time until the ledger first grew, when ``ledger`` is given).
An empty line or EOF ends the server.
"""
from __future__ import annotations

import json
import os
import signal
import sys
import time
from pathlib import Path

# the checkout this file belongs to, not whichever medner the interpreter has installed (a worktree's tests must
# run the worktree's code; sys.path[0] is this file's folder)
sys.path.insert(0, str(Path(__file__).resolve().parents[3]))


def _preload() -> None:
    import medner.annotate  # noqa: F401  (torch, the tagger, alignment)
    import medner.batch.runner  # noqa: F401
    import medner.cli  # noqa: F401
    import medner.cli.annotate  # noqa: F401
    import medner.run.directory  # noqa: F401  (transformers)
    import peft  # noqa: F401
    import transformers.models.bert.modeling_bert  # noqa: F401  (what AutoModel resolves lazily)
    import tqdm.auto  # noqa: F401

    medner.cli.build_parser()  # imports every command group (some build tables at import time)


def _child(argv: list[str], log: str) -> None:
    fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    rc = 1
    try:
        from medner.cli import main

        rc = main(argv)
    except BaseException:  # noqa: BLE001 - report, then exit without running the parent's cleanup
        import traceback

        traceback.print_exc()
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(rc)


def _shards_done(ledger: str) -> int:
    try:
        with open(ledger, "rb") as fh:
            return fh.read().count(b'"event":"shard"')
    except FileNotFoundError:
        return 0


def serve() -> None:
    _preload()
    print(json.dumps({"ready": True}), flush=True)
    for line in sys.stdin:
        if not line.strip():
            break
        request = json.loads(line)
        started = time.monotonic()
        pid = os.fork()
        if pid == 0:
            _child(request["argv"], request["log"])
        kill_after = request.get("kill_after")
        at_shards, ledger = request.get("kill_at_shards"), request.get("ledger")
        armed = started if at_shards is None else None
        killed, status, first_shard = False, None, None
        initial = _shards_done(ledger) if ledger else 0
        while True:
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                break
            count = _shards_done(ledger) if ledger else 0
            if first_shard is None and count > initial:
                first_shard = round(time.monotonic() - started, 3)
            if armed is None and count >= at_shards:
                armed = time.monotonic()
            if kill_after is not None and armed is not None and time.monotonic() - armed >= kill_after:
                os.kill(pid, signal.SIGKILL)
                _, status = os.waitpid(pid, 0)
                killed = True
                break
            time.sleep(0.002)
        rc = os.waitstatus_to_exitcode(status)
        print(json.dumps({"pid": pid, "killed": killed, "rc": rc, "seconds": round(time.monotonic() - started, 3),
                          "first_shard_s": first_shard}), flush=True)


if __name__ == "__main__":
    serve()
