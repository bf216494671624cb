"""SIGTERM stops a command the way Ctrl-C does (perlhf.cli.main)."""

from __future__ import annotations

import os
import signal
import time

import perlhf.cli as cli
from perlhf.errors import Terminated, interrupt_exit_code


def test_sigterm_stops_a_command_like_ctrl_c_and_restores_the_handler(monkeypatch, capsys):
    def killed(args):
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(30)  # the handler raises inside the sleep
        raise AssertionError("SIGTERM did not stop the command")

    def parser(argv):
        p = cli.Parser(prog="perlhf")
        p.set_defaults(func=killed, command="fake", verbose=False)
        return p

    monkeypatch.setattr(cli, "build_parser", parser)
    before = signal.getsignal(signal.SIGTERM)
    assert cli.main([]) == 143
    assert "perlhf fake: terminated (SIGTERM)" in capsys.readouterr().err
    assert signal.getsignal(signal.SIGTERM) is before  # a library caller's own handler is back


def test_interrupt_exit_codes():
    assert interrupt_exit_code(KeyboardInterrupt()) == 130
    assert interrupt_exit_code(Terminated()) == 143
    assert isinstance(Terminated(), KeyboardInterrupt)  # every Ctrl-C path handles it
