"""Submitting a ganlode command to a Ray cluster's job server, and following it to its end.

The command runs as ``ganlode <args>`` on the cluster's head (in the image built from
``deploy/Dockerfile``); its workers and actors go wherever Ray places them. Token
authentication (on by default from Ray 2.59) is handled here: the token comes from
``RAY_AUTH_TOKEN``, the file ``RAY_AUTH_TOKEN_PATH`` or ``~/.ray/auth_token``, and is sent
as a bearer header; it is never printed.
"""

from __future__ import annotations

import asyncio
import logging
import os
import shlex
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from ..errors import UserError

CONNECT_TIMEOUT_S = 5
READ_TIMEOUT_S = 10
POLL_S = 1.0


def default_address() -> str | None:
    """The job server named by RAY_API_SERVER_ADDRESS or RAY_ADDRESS, when it is an http(s) URL."""
    for name in ("RAY_API_SERVER_ADDRESS", "RAY_ADDRESS"):
        value = os.environ.get(name, "")
        if value.startswith(("http://", "https://")):
            return value
    return None


def auth_headers() -> dict[str, str]:
    """The bearer header for a token-auth cluster, or {} where no token is configured."""
    if os.environ.get("RAY_AUTH_MODE", "").strip().lower() == "disabled":
        return {}
    token = os.environ.get("RAY_AUTH_TOKEN", "").strip()
    if not token:
        named = os.environ.get("RAY_AUTH_TOKEN_PATH", "").strip()
        path = Path(named or "~/.ray/auth_token").expanduser()
        if named and not path.is_file():
            raise UserError(f"RAY_AUTH_TOKEN_PATH names {path}, which is not a file: fix or unset it")
        try:
            token = path.read_text().strip()
        except (FileNotFoundError, IsADirectoryError):
            token = ""
        except OSError as e:
            raise UserError(f"cannot read the Ray token file {path} ({e.__class__.__name__}): check its permissions") from None
    return {"Authorization": f"Bearer {token}"} if token else {}


def normalise_address(address: str | None) -> str:
    if not address:
        raise UserError("name the cluster's job server with --address http://HEAD:8265 "
                        "(or set RAY_API_SERVER_ADDRESS)")
    if address.startswith("ray://"):
        raise UserError(f"{address} is a Ray Client address: give the dashboard address instead, "
                        "e.g. --address http://HEAD:8265")
    if "://" not in address:
        address = f"http://{address}"
    parts = urlsplit(address)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise UserError(f"--address {address!r} is not an http(s)://HOST:PORT URL: e.g. http://HEAD:8265")
    return address.rstrip("/")


def preflight(address: str, headers: dict[str, str]) -> str:
    """Check within seconds that a Ray job server answers and accepts us; return its Ray version."""
    import requests

    try:
        r = requests.get(f"{address}/api/version", headers=headers, timeout=(CONNECT_TIMEOUT_S, READ_TIMEOUT_S))
    except requests.exceptions.RequestException as e:
        raise UserError(f"no Ray head answers at {address} ({e.__class__.__name__}): start one with "
                        "`ray start --head`, or check --address (the dashboard port, 8265 by default)") from None
    if r.status_code == 401:
        raise UserError(f"the Ray cluster at {address} requires a token: set RAY_AUTH_TOKEN or write it to "
                        "~/.ray/auth_token (`ray get-auth-token` on the head; on KubeRay, the cluster's Secret)")
    if r.status_code == 403:
        raise UserError(f"the Ray cluster at {address} rejected the token: check RAY_AUTH_TOKEN / ~/.ray/auth_token")
    try:
        r.raise_for_status()
        return str(r.json()["ray_version"])
    except (requests.exceptions.HTTPError, ValueError, KeyError, TypeError):
        raise UserError(f"{address} answers (HTTP {r.status_code}) but is not a Ray job server: "
                        "point --address at the dashboard port, 8265 by default") from None


def runtime_env(path: str | None, working_dir: str | None) -> dict:
    env: dict = {}
    if path:
        import yaml

        try:
            env = yaml.safe_load(Path(path).read_text()) or {}
        except FileNotFoundError:
            raise UserError(f"--runtime-env {path} does not exist: check the path") from None
        except (OSError, yaml.YAMLError) as e:
            raise UserError(f"--runtime-env {path} is not readable YAML ({e.__class__.__name__}): fix it") from None
        if not isinstance(env, dict):
            raise UserError(f"--runtime-env {path} must hold a mapping (env_vars:, pip:, ...), not a {type(env).__name__}")
    if working_dir:
        if not os.path.isdir(working_dir):
            raise UserError(f"--working-dir {working_dir} is not a folder: check the path")
        env["working_dir"] = os.path.abspath(working_dir)
    return env


def follow(client, job_id: str) -> str:
    """Stream the job's logs to stdout until it ends; return its final status name."""
    shown = 0

    async def tail() -> None:
        nonlocal shown
        async for chunk in client.tail_job_logs(job_id):
            sys.stdout.write(chunk)
            sys.stdout.flush()
            shown += len(chunk)

    try:
        asyncio.run(tail())
    except Exception as e:  # noqa: BLE001 - the stream is a convenience; polling below is the truth
        print(f"log stream interrupted ({e.__class__.__name__}); polling the job instead", file=sys.stderr)
    while not (status := client.get_job_status(job_id)).is_terminal():
        time.sleep(POLL_S)
    rest = client.get_job_logs(job_id)[shown:]
    if rest:
        sys.stdout.write(rest)
        sys.stdout.flush()
    return str(status.value if hasattr(status, "value") else status)


@dataclass(frozen=True)
class Placement:
    """Where the entrypoint runs and what the job is called: its own CPUs and GPUs (None: none
    reserved, so it runs on the head) and its submission id (None: Ray names it)."""

    num_cpus: float | None = None
    num_gpus: float | None = None
    submission_id: str | None = None

    def submit_kwargs(self) -> dict[str, Any]:
        return {k: v for k, v in (("entrypoint_num_cpus", self.num_cpus), ("entrypoint_num_gpus", self.num_gpus),
                                  ("submission_id", self.submission_id)) if v is not None}


@dataclass
class Submitted:
    client: Any      # ray.job_submission.JobSubmissionClient
    job_id: str
    entrypoint: str


def submit(address: str, command: list[str], runtime_env: dict, headers: dict[str, str], server_version: str,
           placement: Placement = Placement()) -> Submitted:
    """Submit ``ganlode <command>`` to the job server at ``address``; bad answers are one-line UserErrors."""
    import ray
    from ray.exceptions import AuthenticationError
    from ray.job_submission import JobSubmissionClient

    logging.getLogger("ray.dashboard.modules.job.sdk").setLevel(logging.WARNING)  # "WebSocket closed ..."

    if server_version != ray.__version__:
        print(f"warning: the cluster runs Ray {server_version}, this machine {ray.__version__}; "
              "use the same version on both (deploy/Dockerfile pins it)", file=sys.stderr)
    entrypoint = shlex.join(["ganlode", *command])
    try:
        client = JobSubmissionClient(address, headers=headers)
        job_id = client.submit_job(entrypoint=entrypoint, runtime_env=runtime_env or None, **placement.submit_kwargs())
    except AuthenticationError:
        raise UserError(f"the Ray cluster at {address} did not accept the token: check RAY_AUTH_TOKEN") from None
    except (ConnectionError, RuntimeError, ValueError) as e:
        lines = [line.strip() for line in str(e).strip().splitlines() if line.strip()] or [e.__class__.__name__]
        # the server's answer may carry its traceback: its last line says what went wrong
        first_line = (lines[-1] if any("Traceback" in line for line in lines) else lines[0])[:300]
        if placement.submission_id and "already exist" in str(e):
            raise UserError(f"the cluster at {address} already has a job {placement.submission_id}: pick another "
                            f"--submission-id, or follow that one with `ray job logs {placement.submission_id} "
                            f"--address {address} --follow`") from None
        raise UserError(f"the job server at {address} refused the job: {first_line}") from None
    return Submitted(client, job_id, entrypoint)


def outcome(job: Submitted, status: str) -> tuple[int, str]:
    """(exit status, one line for stderr) of a job that ended with ``status``."""
    info = job.client.get_job_info(job.job_id)
    message = (getattr(info, "message", None) or "").strip().splitlines()
    detail = f" ({message[0][:300]})" if message and status != "SUCCEEDED" else ""
    return (0 if status == "SUCCEEDED" else 1), f"job {job.job_id} {status}{detail}"
