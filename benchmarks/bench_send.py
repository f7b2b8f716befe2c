"""Benchmark of `grille send` and `grille remind` (not a test): python benchmarks/bench_send.py [N]

For N students (default 1,000; 300 tutors, so three or four workbooks per message):
- `grille send` writing the outbox (.eml files): wall time and per message;
- `grille send --resend` over SMTP to an aiosmtpd server on loopback, no pause between
  messages: wall time and per message, against the floor of sending the same messages
  with smtplib alone (no building, no checks, no records);
- `grille remind` (no return yet: every tutor reminded) to the outbox;
- peak memory.
"""

from __future__ import annotations

import resource
import smtplib
import socket
import sys
import tempfile
import time
from email import policy
from email.parser import BytesParser
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller
from bench_generate import write_roster  # the same roster as the generate benchmark
from click.testing import CliRunner

from pipeline.cli import cli


class Sink:
    """An SMTP server that counts what it accepts and keeps nothing."""

    def __init__(self) -> None:
        self.count = 0

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.count += 1
        return "250 OK"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def configure(config: Path, port: int) -> None:
    text = config.read_text(encoding="utf-8")
    text = text.replace('email = ""', 'email = "prof@lycee.example"')
    text = text.replace('serveur = ""', 'serveur = "127.0.0.1"', 1)
    text = text.replace("port = 587", f"port = {port}").replace('"starttls"', '"aucune"')
    config.write_text(text.replace("pause_secondes = 1", "pause_secondes = 0"), "utf-8")


def floor(files: list[Path], port: int) -> float:
    """Seconds to send the already-built messages with smtplib on one connection."""
    parser = BytesParser(policy=policy.default)
    messages = [parser.parsebytes(f.read_bytes()) for f in files]
    start = time.perf_counter()
    with smtplib.SMTP("127.0.0.1", port) as client:
        for message in messages:
            client.send_message(message)
    return time.perf_counter() - start


def timed(runner: CliRunner, root: Path, *args: str) -> float:
    start = time.perf_counter()
    result = runner.invoke(cli, ["--dir", str(root), *args])
    assert result.exit_code == 0, result.output
    return time.perf_counter() - start


def main() -> None:
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 1000
    sink = Sink()
    port = free_port()
    controller = Controller(sink, hostname="127.0.0.1", port=port)
    controller.start()
    runner = CliRunner()
    try:
        with tempfile.TemporaryDirectory() as tmp:
            root = Path(tmp) / "campagne"
            assert runner.invoke(cli, ["init", str(root)]).exit_code == 0
            roster = root / "liste.csv"
            write_roster(roster, count)
            assert runner.invoke(cli, ["--dir", str(root), "generate", "--roster", str(roster)])
            config = root / "grille.toml"
            config.write_text(
                config.read_text("utf-8").replace('email = ""', 'email = "prof@lycee.example"'),
                "utf-8",
            )
            outbox = timed(runner, root, "send")
            files = sorted((root / "output" / "envoi").glob("envoi_*.eml"))
            messages = len(files)
            print(f"{count} stagiaires, {messages} tuteurs")
            print(
                f"grille send (fichiers .eml)          : {outbox:6.2f} s  "
                f"({outbox / messages * 1000:.2f} ms par message)"
            )
            configure(config, port)
            smtp = timed(runner, root, "send", "--resend")
            assert sink.count == messages, sink.count
            bare = floor(files, port)
            print(
                f"grille send --resend (SMTP local)    : {smtp:6.2f} s  "
                f"({smtp / messages * 1000:.2f} ms par message ; smtplib seul : "
                f"{bare / messages * 1000:.2f} ms, soit {smtp / bare:.1f}×)"
            )
            config.write_text(config.read_text("utf-8").replace('"127.0.0.1"', '""', 1), "utf-8")
            remind = timed(runner, root, "remind")
            print(
                f"grille remind (fichiers .eml)        : {remind:6.2f} s  "
                f"({remind / messages * 1000:.2f} ms par relance)"
            )
    finally:
        controller.stop()
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"mémoire maximale                     : {own:.0f} Mo")


if __name__ == "__main__":
    main()
