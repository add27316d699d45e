"""`kotune chat`: piped (one answer a line, a question that cannot be answered gets an empty line
and its reason on stderr, the next one goes on) and interactive in a real terminal (Ctrl-C
stops an answer and returns to the prompt; Ctrl-C at the prompt leaves; no ^C shares a line
with the prompt)."""

import os
import pty
import re
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

KOTUNE = str(Path(sys.executable).with_name("kotune"))


def chat(adapter, stdin: str, *args):
    return subprocess.run(
        [KOTUNE, "chat", "--adapter", str(adapter), *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_piped_questions_get_one_answer_a_line(tiny_adapter):
    result = chat(tiny_adapter, "인이란 무엇입니까?\n\n/reset\n호연지기는?\n/exit\n의란?\n")
    assert result.returncode == 0, result.stderr
    answers = result.stdout.splitlines()
    assert len(answers) == 2 and all(answers), result.stdout  # nothing after /exit
    assert any("가" <= c <= "힣" for c in "".join(answers))
    assert result.stderr == ""  # no loading bars or library warnings


def test_a_question_too_long_is_answered_with_an_error_and_the_next_goes_on(tiny_adapter):
    result = chat(tiny_adapter, "인의예지 " * 200 + "\n호연지기는?\n")
    assert result.returncode == 1  # a script can tell that a question failed
    empty, answer = result.stdout.splitlines()
    assert empty == "" and any("가" <= c <= "힣" for c in answer)
    (line,) = result.stderr.splitlines()
    assert line.startswith("kotune: error: line 1: the question is too long:")
    assert "the model's context is 256 tokens" in line


class Terminal:
    """`kotune chat` in a pseudo-terminal, as a person runs it: Ctrl-C is the byte 0x03."""

    def __init__(self, *argv: str) -> None:
        self.pid, self.fd = pty.fork()
        if self.pid == 0:  # the child: its stdin/stdout are the terminal
            # Ctrl-C as a terminal's foreground job gets it, also where the test runner was
            # started with SIGINT ignored (a shell's background job passes that on)
            signal.signal(signal.SIGINT, signal.SIG_DFL)
            os.execv(KOTUNE, [KOTUNE, *argv])
        self.output = b""

    def read_until(self, pattern: bytes, seconds: float = 120, start: int = 0) -> bytes:
        """Read until `pattern` shows up after byte `start` of the output."""
        deadline = time.monotonic() + seconds
        while pattern not in self.output[start:]:
            left = deadline - time.monotonic()
            assert left > 0, f"no {pattern!r} in {self.output.decode(errors='replace')!r}"
            ready, _, _ = select.select([self.fd], [], [], min(left, 0.5))
            if ready:
                try:
                    self.output += os.read(self.fd, 4096)
                except OSError:  # the child closed the terminal
                    break
        return self.output

    def read_past(self, length: int, seconds: float = 120) -> bytes:
        """Wait until the output is longer than `length` bytes."""
        deadline = time.monotonic() + seconds
        while len(self.output) <= length:
            assert time.monotonic() < deadline, "no more output"
            ready, _, _ = select.select([self.fd], [], [], 0.1)
            if ready:
                self.output += os.read(self.fd, 4096)
        return self.output

    def send(self, data: bytes) -> None:
        os.write(self.fd, data)

    def wait(self, seconds: float = 180) -> int:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            try:
                ready, _, _ = select.select([self.fd], [], [], 0.2)
                if ready:
                    self.output += os.read(self.fd, 4096)
            except OSError:
                pass
            pid, status = os.waitpid(self.pid, os.WNOHANG)
            if pid:
                return os.waitstatus_to_exitcode(status)
        os.kill(self.pid, signal.SIGKILL)
        tail = self.output[-500:].decode(errors="replace")
        raise AssertionError(f"kotune chat did not exit: {tail!r}")


def test_ctrl_c_stops_an_answer_and_a_second_at_the_prompt_leaves(babbling_adapter):
    term = Terminal("chat", "--adapter", str(babbling_adapter), "--max-new-tokens", "900")
    term.read_until("나> ".encode())
    term.send("인이란 무엇입니까?\r".encode())
    term.read_past(len(term.read_until(b"mencius> ")))  # the answer is streaming
    term.send(b"\x03")  # Ctrl-C mid-answer (900 tokens would take many seconds)
    stopped = term.read_until("(중단됨)".encode()).index("(중단됨)".encode())
    term.read_until("\r\n\r\n나> ".encode(), start=stopped)  # back at a prompt of its own
    text = term.output.decode(errors="replace")
    assert re.search(r"\^C\r\n\(중단됨\)\r\n\r\n나> $", text), text[-300:]  # ^C ends its line
    assert not re.search(r"나> [^\r\n]*\^C", text)  # ^C never on the prompt's line
    term.send(b"/reset\r")  # the session goes on
    reset = term.read_until("(새 대화)".encode()).index("(새 대화)".encode())
    term.read_until("나> ".encode(), start=reset)  # waiting at the prompt again
    term.send(b"\x03")  # Ctrl-C at the prompt leaves
    assert term.wait() == 0
    assert term.output.endswith(b"\r\n") and b"Traceback" not in term.output


def test_an_answer_then_end_of_input_leaves_cleanly(tiny_adapter):
    term = Terminal("chat", "--adapter", str(tiny_adapter))
    term.read_until("나> ".encode())
    term.send("호연지기는?\r".encode())
    asked = term.read_until(b"mencius> ").index(b"mencius> ")
    term.read_until("\r\n\r\n나> ".encode(), start=asked)  # answered, then a prompt on its own line
    term.send(b"\x04")  # Ctrl-D
    assert term.wait() == 0 and term.output.endswith(b"\r\n")
