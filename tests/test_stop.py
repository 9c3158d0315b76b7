"""A Ctrl-C is never lost: one that Python's handler raised where it is dropped (a ``__del__``, an at-fork
hook) still stops the next batch or drawing job (fashionrec.stop), and a command started with the stop
signals blocked unblocks them."""

import os
import signal
import subprocess
import sys
import textwrap

SWALLOW = textwrap.dedent("""
    import os, signal, sys
    from pathlib import Path
    from fashionrec import stop
    from fashionrec.data.loader import BatchLoader, ImageSource
    from fashionrec.data.synth import trees

    class Swallow:
        def __del__(self):  # Python runs the SIGINT handler in here, and drops its KeyboardInterrupt
            os.kill(os.getpid(), signal.SIGINT)
            return None

    def swallowed():
        Swallow()
        print("swallowed", flush=True)

    root = Path(sys.argv[1])
    paths = sorted(str(p.relative_to(root)) for p in root.rglob("*.jpg"))[:24]
    for workers in (0, 2):
        with stop.scope():
            seen = 0
            try:
                for _ in BatchLoader(ImageSource(root, paths), 32, 2, workers=workers).epoch(0):
                    seen += 1
                    if seen == 1:
                        swallowed()
                print("loader", workers, "finished", seen)
            except KeyboardInterrupt:
                print("loader", workers, "stopped after", seen)
    def draw(row, size, key, drawn=[]):
        drawn.append(1)
        if len(drawn) == 2:
            swallowed()
        return trees.draw_one_garment(row, size, key)
    next_result = trees.Workers.next_result
    def next_result_swallowing(self, calls=[]):
        calls.append(1)
        if len(calls) == 2:
            swallowed()
        return next_result(self)
    trees.Workers.next_result = next_result_swallowing
    rows = [{"path": f"{i}.jpg", "category": "shirt", "texture": "plain"} for i in range(64)]
    for workers in (1, 2):
        out = Path(sys.argv[2]) / str(workers)
        with stop.scope():
            try:
                trees.draw_images(out, rows, 0, 32, 0, workers, False, "x", draw=draw)
                print("synth", workers, "finished", len(list(out.iterdir())))
            except KeyboardInterrupt:
                print("synth", workers, "stopped after", len(list(out.iterdir())))
""")


def test_a_ctrl_c_swallowed_in_a_del_still_stops_the_loader_and_the_drawing(synth_root, tmp_path):
    out = subprocess.run([sys.executable, "-c", SWALLOW, str(synth_root / "fashion"), str(tmp_path)],
                         capture_output=True, text=True, timeout=120, preexec_fn=_foreground_job)
    assert out.returncode == 0, out.stderr
    lines = [ln for ln in out.stdout.splitlines() if ln != "swallowed"]
    # each dropped KeyboardInterrupt is recorded and left quiet: no "Exception ignored ... Traceback" on stderr
    assert out.stdout.count("swallowed") == 4 and "Exception ignored" not in out.stderr, (out.stdout, out.stderr)
    assert [ln.rsplit(" ", 1)[0] for ln in lines] == ["loader 0 stopped after", "loader 2 stopped after",
                                                      "synth 1 stopped after", "synth 2 stopped after"], out.stdout
    assert int(lines[0].split()[-1]) == 1 and int(lines[1].split()[-1]) == 1  # the very next batch
    assert int(lines[2].split()[-1]) == 2 and int(lines[3].split()[-1]) < 64


def test_stop_requests_wait_for_the_ranks_in_data_parallel_epochs():
    """Under torchrun the handler only records the request and the ranks stop together: no loader raises
    on its own while the epochs run; once they are over, the recorded request stops the command."""
    script = textwrap.dedent("""
        import os, signal
        from fashionrec import stop
        from fashionrec.distributed import StopSignals, World
        with stop.scope():
            signals = StopSignals(World(0, 2))
            with signals.installed():
                os.kill(os.getpid(), signal.SIGINT)
                stop.check()
                print("deferred", signals.requested, flush=True)
            try:
                stop.check()
            except KeyboardInterrupt:
                print("stopped")
    """)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60,
                         preexec_fn=_foreground_job)
    assert out.returncode == 0 and out.stdout.split() == ["deferred", "True", "stopped"], out.stderr


def test_ctrl_c_stops_a_command_started_with_the_stop_signals_blocked(tmp_path):
    """exec keeps the mask of the thread that started a command: started with SIGINT blocked, `synth` unblocks
    it, and Ctrl-C stops it with one word."""

    def blocked():
        _foreground_job()
        signal.pthread_sigmask(signal.SIG_BLOCK, (signal.SIGINT, signal.SIGTERM))

    proc = subprocess.Popen([sys.executable, "-m", "fashionrec", "synth", str(tmp_path / "out"), "--n", "5000",
                             "--size", "64"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True, preexec_fn=blocked)
    for line in iter(proc.stderr.readline, ""):
        if "deepfashion:" in line and "/5000" in line and not line.startswith("deepfashion:   0%"):
            break
    os.killpg(proc.pid, signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130 and "Traceback" not in err and err.rstrip().endswith("interrupted"), err


def _foreground_job():
    """In the child: SIGINT as a terminal's foreground job has it, however pytest was started (a background
    job of a shell without job control ignores it, and a command keeps ignoring it)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)
