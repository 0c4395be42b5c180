"""lakecdp.spark.session.jvm_output: a child started inside the block writes to the file for its whole
life, the parent's own output goes where it went before."""

from __future__ import annotations

import subprocess
import sys
import textwrap


def test_a_child_started_inside_writes_to_the_file_and_the_parent_keeps_its_output(tmp_path):
    log = tmp_path / "out" / "spark.log"
    script = textwrap.dedent(f"""
        import subprocess, sys
        from pathlib import Path
        from lakecdp.spark.session import jvm_output

        print("before", flush=True)
        with jvm_output(Path({str(log)!r})):
            # Like the JVM: started here, still printing after the block has ended.
            child = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.readline(); print('child out'); "
                                      "print('child err', file=sys.stderr)"], stdin=subprocess.PIPE)
        print("after", flush=True)
        print("parent err", file=sys.stderr, flush=True)
        child.communicate(b"go\\n")
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["before", "after"] and done.stderr.strip() == "parent err"
    assert log.read_text().splitlines() == ["child out", "child err"]
