"""A notebook test's kernel that dies or stalls says why (dfcourse/kernels.py), on tiny
notebooks written here: a few seconds each."""
import re

import nbformat
import pytest
from nbclient.exceptions import CellTimeoutError, DeadKernelError
from nbformat.v4 import new_code_cell, new_notebook

from dfcourse.runner import execute


def notebook(tmp_path, *sources):
    path = tmp_path / "tiny.ipynb"
    nbformat.write(new_notebook(cells=[new_code_cell(s) for s in sources]), path)
    return path


def test_a_kernel_killed_with_sigkill_shows_the_signal_peak_rss_and_cell(tmp_path):
    path = notebook(tmp_path,
                    "from ipykernel.kernelapp import IPKernelApp\nprint('transport', IPKernelApp.instance().transport)",
                    "import os, signal, time\n"
                    "ballast = bytes(range(256)) * (300 * 4096)  # 300 MB, every page written\n"
                    "time.sleep(2)  # the watcher samples twice a second\n"
                    "os.kill(os.getpid(), signal.SIGKILL)")
    with pytest.raises(DeadKernelError) as info:
        execute(path, tmp_path / "out.ipynb", timeout=120, cwd=tmp_path, log_dir=tmp_path / "log")
    message = str(info.value)
    assert "the kernel died in cell 1" in message and "killed by signal 9 (SIGKILL)" in message, message
    peak = re.search(r"peak RSS: kernel (\d+) MB", message)
    assert peak and int(peak.group(1)) >= 300, message
    assert "os.kill(os.getpid(), signal.SIGKILL)" in message  # the cell's source
    assert "faulthandler armed in kernel pid" in message  # the tail of the kernel's stderr
    # no TCP port to race for: the kernel listened on unix sockets
    executed = nbformat.read(tmp_path / "out.ipynb", as_version=4)
    assert "transport ipc" in executed.cells[0].outputs[0]["text"]


def test_a_cell_that_sleeps_past_the_timeout_shows_its_stack(tmp_path):
    path = notebook(tmp_path, "x = 1", "import time\n\n\ndef wait():\n    time.sleep(120)\n\n\nwait()")
    with pytest.raises(CellTimeoutError) as info:
        execute(path, timeout=3, cwd=tmp_path, log_dir=tmp_path / "log")
    message = str(info.value)
    assert "cell 1 timed out" in message and "is still alive" in message, message
    assert "running line 5 of the cell (in wait): time.sleep(120)" in message, message
    assert "running line 8 of the cell (in <module>): wait()" in message, message
    assert "Current thread" in message and "in run_cell" in message  # faulthandler's dump of the kernel


def test_allow_errors_runs_on_past_a_failing_cell(tmp_path):
    nb = execute(notebook(tmp_path, "raise ValueError('unsolved')", "print('after')"), timeout=60, cwd=tmp_path,
                 allow_errors=True)
    assert nb.cells[0].outputs[0]["ename"] == "ValueError" and nb.cells[1].outputs[0]["text"] == "after\n"


def test_exit_descriptions():
    from dfcourse.kernels import exit_description

    assert exit_description(-9) == "killed by signal 9 (SIGKILL)"
    assert exit_description(-11) == "killed by signal 11 (SIGSEGV)"
    assert exit_description(1) == "exited with code 1"


def test_the_course_report_names_how_the_kernel_ended():
    from dfcourse.runner import _headline

    died = DeadKernelError("Kernel died\n--- the kernel died in cell 12: kernel pid 7 killed by signal 9 (SIGKILL)\n"
                           "peak RSS: kernel 2034 MB\nkernel stderr/stdout, last 1 lines:\nsomething else")
    assert _headline(died) == "the kernel died in cell 12: kernel pid 7 killed by signal 9 (SIGKILL)"
    assert _headline(RuntimeError("Traceback ...\nValueError: boom")) == "ValueError: boom"


def test_a_stack_without_the_cell_says_the_kernel_is_not_running_it():
    from nbformat.v4 import new_code_cell

    from dfcourse.kernels import _cell_file, _cell_lines

    cell = new_code_cell("import time\ntime.sleep(5)")
    idle = ('Current thread 0x01 (most recent call first):\n  File "/usr/lib/python3.11/selectors.py", line 468 in select\n'
            '  File "/usr/lib/python3.11/asyncio/base_events.py", line 1884 in _run_once\n')
    assert "no thread of the kernel is running this cell" in _cell_lines(cell, idle)
    busy = f'Current thread 0x01 (most recent call first):\n  File "/tmp/ipykernel_42/{_cell_file(cell.source)}", ' \
           'line 2 in <module>\n' + idle
    assert "running line 2 of the cell (in <module>): time.sleep(5)" in _cell_lines(cell, busy)
    assert "no thread" not in _cell_lines(cell, busy)


def test_sliced_get_msg_polls_afresh_and_keeps_the_deadline():
    import asyncio
    from queue import Empty

    from dfcourse.kernels import sliced_get_msg

    asked = []

    async def get_msg(timeout=None):  # a message "arrives" on the fourth poll
        asked.append(timeout)
        if len(asked) < 4:
            raise Empty
        return {"msg": len(asked)}

    got = asyncio.run(sliced_get_msg(get_msg, slice_s=0.0)(timeout=None))
    assert got == {"msg": 4} and all(t == 0.0 for t in asked), asked  # forever = slice after slice

    asked.clear()

    async def never(timeout=None):
        asked.append(timeout)
        await asyncio.sleep(timeout)
        raise Empty

    with pytest.raises(Empty):
        asyncio.run(sliced_get_msg(never, slice_s=0.05)(timeout=0.12))
    assert len(asked) >= 3 and max(asked) <= 0.05 + 1e-9, asked  # never one long wait past a slice
