"""The CLI's surface: every example a user can read parses, --help loads neither torch nor Ray,
--version, shell completion, and flags that reach the pipelines by their field names."""

from __future__ import annotations

import contextlib
import io
import re
import shlex
import subprocess
import sys
from pathlib import Path

import click
import pytest

from ganlode.orchestrator.cli import main as cli_main
from ganlode.orchestrator.cli import options
from ganlode.orchestrator.cli.main import main, parse
from ganlode.orchestrator.cli.submit import job_command

ROOT = Path(__file__).resolve().parents[1]
READMES = (ROOT / "README.md", ROOT / "deploy" / "README.md")


def _command_paths(command: click.Command = cli_main.cli, path: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    """Every command line that has its own --help: (), ("transfer",), ("data", "show"), ..."""
    paths = [path]
    if isinstance(command, click.Group):
        ctx = click.Context(command)
        for name in command.list_commands(ctx):
            paths += _command_paths(command.get_command(ctx, name), (*path, name))
    return paths


def _help(path: tuple[str, ...]) -> str:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert main([*path, "--help"]) == 0
    return out.getvalue()


PATHS = _command_paths()


# ---------------------------------------------------------------- the examples


def _logical_lines(text: str) -> list[str]:
    """Lines with their backslash continuations joined (each piece stripped)."""
    lines, pending = [], ""
    for raw in text.splitlines():
        line = raw.strip()
        if pending:
            line = f"{pending} {line}"
        if line.endswith("\\"):
            pending = line[:-1].rstrip()
            continue
        pending = ""
        lines.append(line)
    return lines


def _command_of(line: str) -> list[str] | None:
    """The ganlode command line in an example line, without its description, or None.

    A description follows the command after two or more spaces (help texts) or after `#`
    (shell comments).
    """
    if not line.startswith("ganlode ") and line != "ganlode":
        return None
    command = re.split(r"\s{2,}", line, maxsplit=1)[0]
    words = shlex.split(command, comments=True)
    return words[1:]


def _expand_loops(block: str) -> list[str]:
    """A code block's lines, with each `for VAR in WORDS; do ... done` body repeated per value
    (``$VAR`` and ``${VAR...}`` replaced by the value, resp. its first word)."""
    lines = _logical_lines(block)
    out: list[str] = []
    i = 0
    while i < len(lines):
        loop = re.fullmatch(r"for (\w+) in (.+); do", lines[i])
        if not loop:
            out.append(lines[i])
            i += 1
            continue
        var, values = loop.group(1), shlex.split(loop.group(2))
        end = next(j for j in range(i, len(lines)) if lines[j].startswith("done"))
        for value in values:
            for body in lines[i + 1:end]:
                body = re.sub(r"\$\{" + var + r"[^}]*\}", value.split()[0], body)
                out.append(body.replace("$" + var, value))
        i = end + 1
    return out


def _readme_lines(path: Path) -> list[str]:
    """Every shell command in the file's fenced code blocks (split at `&&`, `||` and `;`)."""
    blocks = re.findall(r"^```[^\n]*\n(.*?)^```", path.read_text(), flags=re.S | re.M)
    commands = []
    for block in blocks:
        for line in _expand_loops(block):
            commands += [part.strip() for part in re.split(r"&&|\|\||;", line)]
    return commands


def _examples() -> list[tuple[str, list[str]]]:
    found = []
    for path in PATHS:
        where = " ".join(("ganlode", *path, "--help"))
        found += [(where, argv) for line in _logical_lines(_help(path)) if (argv := _command_of(line)) is not None]
    for readme in READMES:
        where = str(readme.relative_to(ROOT))
        found += [(where, argv) for line in _readme_lines(readme) if (argv := _command_of(line)) is not None]
    return found


EXAMPLES = _examples()


def _parse(argv: list[str]) -> click.Context:
    """Parse a ganlode command line with the real commands, and the job of a `submit -- CMD ...` too."""
    try:
        ctx = parse(argv)
        if ctx.command.name == "submit":
            parse(job_command(ctx.params["command"]))
    except click.UsageError as e:
        pytest.fail(cli_main.usage_error_line(e))
    return ctx


def _config_source(argv: list[str]) -> list[str]:
    """The first example of the same command without --config or --resume: what a run.yaml it wrote holds."""
    return next(other for _, other in EXAMPLES
                if other[:1] == argv[:1] and "--config" not in other and "--resume" not in other)


def _write_config_of(argv: list[str]) -> None:
    """For an example that reads ``--config PATH``: write PATH (under the current folder) as that
    command's run.yaml, from its first plain example."""
    from ganlode.orchestrator.cli import runconfig

    path = Path(argv[argv.index("--config") + 1])
    ctx = parse(_config_source(argv))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(runconfig.dump(runconfig.document(ctx), ctx.command_path))


@pytest.mark.parametrize("where,argv", EXAMPLES, ids=[f"{w}: {' '.join(a)}"[:120] for w, a in EXAMPLES])
def test_every_example_parses(where, argv, tmp_path, monkeypatch):
    if "--config" in argv:  # the file it names is a run's run.yaml: write one, in a scratch folder
        monkeypatch.chdir(tmp_path)
        _write_config_of(argv)
    _parse(argv)


@pytest.mark.parametrize("command", ["transfer", "mine", "tune", "pretrain"])
def test_a_written_config_parses_back_to_the_same_options(command, tmp_path):
    """run.yaml holds the resolved options: read back with --config, they are the same; a flag beside it wins."""
    from ganlode.orchestrator.cli import runconfig

    source = _config_source([command])
    ctx = parse(source)
    path = tmp_path / "run.yaml"
    path.write_bytes(runconfig.dump(runconfig.document(ctx), ctx.command_path))
    again = parse([command, "--config", str(path)])
    assert runconfig.document(again) == runconfig.document(ctx)
    assert parse([command, "--config", str(path), "--out", "elsewhere"]).params["out"] == "elsewhere"
    assert "config" not in runconfig.document(ctx) and "force-unlock" not in runconfig.document(ctx)


def test_every_command_shows_an_example_of_itself():
    for path in PATHS:
        shown = [argv for where, argv in EXAMPLES if where == " ".join(("ganlode", *path, "--help"))]
        assert any(argv[:len(path)] == list(path) for argv in shown), path


def test_the_readmes_examples_are_found():
    """The collector sees the README's loop and the submit lines of deploy/README.md (not just nothing)."""
    argvs = [" ".join(a) for w, a in EXAMPLES if w.endswith("README.md")]
    assert "demo" in argvs
    assert any(a.startswith("transfer") and "--method freezed --freeze-depth 2" in a for a in argvs)
    assert sum(a.startswith("submit") for a in argvs) >= 3


@pytest.mark.parametrize("argv,says", [
    (["submit", "--address", "http://HEAD:8265", "--", "mine", "--sources", "zoo:a,zoo:b", "--target", "t", "--out", "o"],
     "--sources"),  # the example REVIEW P8 found: mine takes a repeated --source
    (["submit", "--address", "http://127.0.0.1:8265", "--", "tune", "--target", "mnist5k:7@100", "--out", "o"],
     "missing --source, --method"),
    (["transfer", "--source", "zoo:digits-0to4", "--out", "o"], "missing --target, --method"),
    (["pretrain", "--data", "mnist5k:0-4"], "--out"),  # required (click >= 8.3 takes default=None as given)
    (["transfer", "--resume", "runs/ft7", "--steps", "10"], "drop --steps"),
    (["mine", "--source", "zoo:a", "--target", "t", "--out", "o"], "two or more"),
    (["eval", "runs/ft7", "--split", "train"], "--split"),
])
def test_the_parser_rejects_what_would_fail(argv, says):
    """The example check has teeth: the lines a user would see fail are rejected by parsing alone."""
    with pytest.raises(click.UsageError) as e:
        ctx = parse(argv)
        if ctx.command.name == "submit":
            parse(job_command(ctx.params["command"]))
    assert says in e.value.format_message()


# ---------------------------------------------------------------- --help is fast: no torch, no Ray

PROBE = """\
import contextlib, io, sys
from ganlode.orchestrator.cli.main import main
with contextlib.redirect_stdout(io.StringIO()):
    code = main(sys.argv[1:])
print(code, [m for m in ("torch", "ray") if m in sys.modules])
"""


@pytest.mark.parametrize("path", PATHS, ids=[" ".join(p) or "ganlode" for p in PATHS])
def test_help_imports_neither_torch_nor_ray(path):
    done = subprocess.run([sys.executable, "-c", PROBE, *path, "--help"], capture_output=True, text=True,
                          timeout=60, check=True)
    assert done.stdout.split("\n")[0] == "0 []", done.stdout + done.stderr


def test_version(capsys):
    import ganlode

    assert main(["--version"]) == 0
    assert capsys.readouterr().out == f"ganlode {ganlode.__version__}\n"


@pytest.mark.parametrize("shell,marker", [("bash_source", "complete -o nosort -F _ganlode_completion ganlode"),
                                          ("zsh_source", "#compdef ganlode")])
def test_shell_completion_scripts(shell, marker):
    env = {**__import__("os").environ, "_GANLODE_COMPLETE": shell}
    done = subprocess.run([sys.executable, "-c", "from ganlode.orchestrator.cli.main import main; main([])"],
                          env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert marker in done.stdout and "_GANLODE_COMPLETE" in done.stdout


# ---------------------------------------------------------------- help and registries agree


def test_method_help_lists_every_method_with_its_summary_and_defaults():
    from ganlode.methods import catalog

    text = _help(("transfer",))
    for r in catalog.RECORDS:
        line = next(i for i, t in enumerate(text.splitlines()) if t.startswith(f"  {r.name} "))
        assert r.summary in text.splitlines()[line]
        assert f"defaults: {catalog.defaults_text(r.name)}" in text.splitlines()[line + 1]
    for default in ("freeze_depth=2", "l2sp_weight=0.01", "distill_weight=1"):
        assert default in text


def test_cli_constants_equal_the_torch_side_registries():
    import typing

    from ganlode.methods.base import TransferOptions
    from ganlode.orchestrator import data
    from ganlode.orchestrator.cli.data import BUILTINS
    from ganlode.orchestrator.evaluation import features, protocol

    assert options.FEATURES == features.FEATURES
    assert set(options.EVAL_SPLITS) == set(protocol.EVAL_SPLITS)
    assert BUILTINS == tuple(data.describe_builtins())
    assert options.METHOD_OPTIONS == TransferOptions.names()
    hints = typing.get_type_hints(TransferOptions)
    for name, kind in options._METHOD_TYPES.items():
        expected = str if isinstance(kind, click.Choice) else kind
        assert hints[name] == expected | None, name


# ---------------------------------------------------------------- flags reach the pipelines by field name


def _fake_result(run: str):
    from ganlode.orchestrator.pipelines.transfer import TransferResult

    return TransferResult(run=run, method="freezed", steps=3, metrics={"fid": 1.0, "kmmd": 0.1, "mv": 0.5, "n": 7})


def test_transfer_flags_become_transfer_options(monkeypatch, capsys):
    from ganlode.methods.base import TransferOptions
    from ganlode.orchestrator.pipelines import transfer

    seen = {}

    def fake(source, target, method, opts, **kw):
        seen.update(source=source, target=target, method=method, options=opts, **kw)
        return _fake_result(kw["out"])

    monkeypatch.setattr(transfer, "run_transfer", fake)
    assert main(["transfer", "--source", "S", "--target", "mnist5k:7@25", "--method", "freezed", "--out", "R",
                 "--freeze-depth", "1", "--lr", "0.001", "--steps", "3", "--no-progress"]) == 0
    assert seen["options"] == TransferOptions(freeze_depth=1, lr=0.001)  # unset: None, the method's default
    assert (seen["steps"], seen["out"], seen["show_progress"], seen["feature_kind"]) == (3, "R", False, "auto")
    assert capsys.readouterr().out.rstrip().endswith("vs 7 test images of mnist5k:7@25")


def test_transfer_resume_calls_resume_transfer_with_the_run_alone(monkeypatch, capsys, tmp_path):
    from ganlode.orchestrator.artifacts.rundir import RunDir
    from ganlode.orchestrator.pipelines import transfer

    run = str(tmp_path / "run")
    RunDir(run).write_config({"run_kind": "transfer", "status": "running", "target": "mnist5k:7@25"})
    calls = []

    def fake(path, **kw):
        calls.append((path, kw))
        return _fake_result(path)

    monkeypatch.setattr(transfer, "resume_transfer", fake)
    assert main(["transfer", "--resume", run, "--no-progress"]) == 0
    (path, kw), = calls
    assert path == run and callable(kw.pop("on_eval")) and kw == {"show_progress": False}  # on_eval: --report-to
    assert capsys.readouterr().out.rstrip().endswith("vs 7 test images of mnist5k:7@25")


@pytest.mark.parametrize("argv,split", [([], "test"), (["--split", "val"], "val")])
def test_eval_passes_the_split(monkeypatch, capsys, argv, split):
    from ganlode.orchestrator.pipelines import evaluate

    seen = {}

    def fake(path, **kw):
        seen.update(kw)
        return evaluate.Evaluation(path=path, method="glo", target="T", n=5, split=kw["split"],
                                   values={"fid": 1, "kmmd": 2, "mv": 3, "kmmd_bandwidth": 4}, appended_to=None)

    monkeypatch.setattr(evaluate, "evaluate_model", fake)
    assert main(["eval", "runs/x", *argv]) == 0
    assert seen["split"] == split
    assert f"vs 5 {split} images of T" in capsys.readouterr().out


def test_ctrl_c_is_one_line_and_exit_130(monkeypatch, capsys):
    from ganlode.orchestrator.pipelines import transfer

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(transfer, "run_transfer", interrupted)
    assert main(["transfer", "--source", "S", "--target", "T", "--method", "glo", "--out", "R"]) == 130
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: interrupted")
