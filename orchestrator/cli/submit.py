"""``ganlode submit``: run a ganlode command on a Ray cluster through its job server.

The command after ``--`` runs as ``ganlode <args>`` on the cluster's head; the client
(:mod:`ganlode.orchestrator.jobs.submit`) handles token authentication and follows the job.
"""

from __future__ import annotations

import argparse
import sys

from ..errors import UserError
from ..jobs import submit as jobs

EPILOG = """\
examples:
  ganlode submit --address http://HEAD:8265 -- mine --sources zoo:digits-0to4,zoo:digits-5to9 \\
      --target mnist5k:7@100 --out s3://BUCKET/runs/mine7
  ganlode submit --address http://127.0.0.1:8265 --no-wait \\
      --runtime-env deploy/runtime_env.yaml -- tune --target mnist5k:7@100 --out s3://BUCKET/runs/tune7
  ganlode submit --address http://127.0.0.1:8265 --working-dir . -- \\
      pretrain --data mnist5k:0-4 --out s3://BUCKET/runs/d04 --steps 2000

The token of a cluster with token auth is read from RAY_AUTH_TOKEN, RAY_AUTH_TOKEN_PATH or
~/.ray/auth_token (KubeRay: kubectl get secret CLUSTER -o jsonpath='{.data.auth_token}' | base64 -d).
Exit status: 0 if the job SUCCEEDED, 1 if it FAILED or was STOPPED, 2 on bad input.
"""


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = sub.add_parser(
        "submit",
        help="run a ganlode command on a Ray cluster (Ray job submission)",
        description="Submit `ganlode ARGS...` as a Ray job, print its id, follow its logs and "
                    "exit with its outcome.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--address", default=jobs.default_address(), metavar="URL",
                   help="the cluster's dashboard / job server, e.g. http://HEAD:8265 "
                        "(default: RAY_API_SERVER_ADDRESS or RAY_ADDRESS when they are http URLs)")
    p.add_argument("--working-dir", metavar="DIR",
                   help="a local folder uploaded as the job's working directory (configs, image folders)")
    p.add_argument("--runtime-env", metavar="YAML",
                   help="a Ray runtime environment file, e.g. deploy/runtime_env.yaml")
    p.add_argument("--no-wait", action="store_true", help="print the job id and return at once")
    p.add_argument("job_command", nargs=argparse.REMAINDER, metavar="-- COMMAND ...",
                   help="the ganlode command to run on the cluster, after --")
    return p


def _command(args: argparse.Namespace) -> list[str]:
    command = list(args.job_command or [])
    if command[:1] == ["--"]:
        command = command[1:]
    if command[:1] == ["ganlode"]:
        command = command[1:]
    if not command:
        raise UserError("name the ganlode command to run after --, e.g. "
                        "ganlode submit --address http://HEAD:8265 -- mine ...")
    if command[0] == "submit":
        raise UserError("`ganlode submit -- submit ...` would submit from the cluster to itself: name another command")
    return command


def run(args: argparse.Namespace) -> int:
    command = _command(args)
    address = jobs.normalise_address(args.address)
    runtime_env = jobs.runtime_env(args.runtime_env, args.working_dir)
    headers = jobs.auth_headers()
    server_version = jobs.preflight(address, headers)
    job = jobs.submit(address, command, runtime_env, headers, server_version)
    print(job.job_id, flush=True)
    print(f"submitted `{job.entrypoint}` to {address} as {job.job_id}", file=sys.stderr)
    if args.no_wait:
        print(f"follow it with: ray job logs {job.job_id} --address {address} --follow", file=sys.stderr)
        return 0
    try:
        status = jobs.follow(job.client, job.job_id)
    except KeyboardInterrupt:
        print(f"stopped following; the job keeps running: ray job stop {job.job_id} --address {address}", file=sys.stderr)
        return 130
    code, line = jobs.outcome(job, status)
    print(line, file=sys.stderr)
    return code
