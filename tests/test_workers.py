"""The loader's worker processes (fashionrec.data.workers): order, errors, deaths, and no process left behind."""

import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from fashionrec.data.workers import WorkerDied, Workers

_STATE = {}


def _init():
    _STATE["pid"] = os.getpid()


def _echo(job: bytes):
    """Sleep the job's first byte in ms, then answer the job and who ran it."""
    time.sleep(job[0] / 1000)
    if job == b"\x00boom":
        raise ValueError("a bug in a worker")
    return {"job": job.hex(), "pid": _STATE["pid"]}


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"  # a zombie has exited
    except FileNotFoundError:
        return False


def test_answers_come_back_in_submission_order_from_every_worker():
    workers = Workers(3, _init, _echo)
    try:
        jobs = [bytes([d, i]) for i, d in enumerate([30, 0, 10, 0, 20, 0, 5])]  # the slow ones first
        for job in jobs:
            workers.submit(job)
        assert workers.pending == len(jobs)
        answers = [workers.next_result() for _ in jobs]
        assert [a["job"] for a in answers] == [j.hex() for j in jobs]
        assert len({a["pid"] for a in answers}) == 3 and os.getpid() not in {a["pid"] for a in answers}
        assert workers.pending == 0
    finally:
        workers.close()
    workers.close()  # twice is fine
    with pytest.raises(ValueError, match="n must be >= 1"):
        Workers(0, _init, _echo)


def test_a_bug_in_a_worker_raises_its_traceback_and_the_worker_goes_on():
    workers = Workers(1, _init, _echo)
    try:
        workers.submit(b"\x00boom")
        workers.submit(b"\x00ok")
        with pytest.raises(RuntimeError, match=r"worker 0 \(pid \d+\) failed:\n(.|\n)*ValueError: a bug in a worker"):
            workers.next_result()
        assert workers.next_result()["job"] == b"\x00ok".hex()
    finally:
        workers.close()


@pytest.mark.parametrize("signum, raises", [(signal.SIGKILL, WorkerDied), (signal.SIGTERM, KeyboardInterrupt),
                                            (signal.SIGUSR1, WorkerDied)])
def test_a_worker_that_dies_owing_an_answer_is_reported_not_waited_for(signum, raises):
    """multiprocessing.Pool waits forever for a job whose worker the OOM killer took; a stop signal to a worker
    means the process group is being stopped: the caller's interrupt handling applies."""
    workers = Workers(2, _init, _echo, name="loader worker")
    try:
        workers.submit(bytes([0]))
        first = workers.next_result()["pid"]
        workers.submit(bytes([255]))  # worker 1, busy for 255 ms
        time.sleep(0.05)
        os.kill(workers._procs[1].pid, signum)
        start = time.monotonic()
        with pytest.raises(raises) as e:
            workers.next_result()
        assert time.monotonic() - start < 5
        if raises is WorkerDied:
            name, pid = signal.Signals(signum).name, workers._procs[1].pid
            assert f"loader worker 1 (pid {pid}) was killed by {name} while a batch was due" in str(e.value)
            assert ("out of memory?" in str(e.value)) == (signum == signal.SIGKILL)
        assert _alive(first)
    finally:
        workers.close()
    assert not _alive(first)


def test_workers_leave_when_their_parent_is_killed(tmp_path):
    """SIGKILL gives the parent no chance to stop its workers: each notices on its own within seconds."""
    script = textwrap.dedent("""
        import os, signal, sys
        sys.path.insert(0, sys.argv[1])
        from test_workers import _echo, _init
        from fashionrec.data.workers import Workers
        workers = Workers(2, _init, _echo)
        print(" ".join(str(p.pid) for p in workers._procs), flush=True)
        os.kill(os.getpid(), signal.SIGKILL)
    """)
    out = subprocess.run([sys.executable, "-c", script, os.path.dirname(__file__)], capture_output=True, text=True,
                         timeout=60)
    pids = [int(p) for p in out.stdout.split()]
    assert out.returncode == -signal.SIGKILL and len(pids) == 2, out.stderr
    deadline = time.monotonic() + 10
    while any(_alive(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not any(_alive(p) for p in pids)


def test_a_stop_signal_to_the_group_while_workers_start_reaches_no_worker_handler():
    """The parent's handlers are inherited through fork: a SIGINT in a new worker before it resets them would
    print a KeyboardInterrupt traceback from the worker. Signals are blocked across fork; the parent gets its own."""
    script = textwrap.dedent("""
        import os, signal, sys, time
        sys.path.insert(0, sys.argv[1])
        from test_workers import _echo, _init
        from fashionrec.data.workers import Workers
        got = []
        signal.signal(signal.SIGINT, lambda *a: got.append(1))
        for _ in range(20):
            workers = Workers(2, _init, _echo)
            os.killpg(0, signal.SIGINT)
            workers.submit(bytes([0]))
            workers.next_result()
            workers.close()
        print(len(got))
    """)
    out = subprocess.run([sys.executable, "-c", script, os.path.dirname(__file__)], capture_output=True, text=True,
                         timeout=120, start_new_session=True)
    assert out.returncode == 0 and out.stdout.split() == ["20"], out.stderr
    assert "Traceback" not in out.stderr and "KeyboardInterrupt" not in out.stderr
