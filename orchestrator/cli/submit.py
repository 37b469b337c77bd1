"""``ganlode submit``: run a ganlode command on a Ray cluster through its job server.

The command after ``--`` runs as ``ganlode <args>`` on the cluster's head; the client
(:mod:`ganlode.orchestrator.jobs.submit`) handles token authentication and follows the job.
"""

from __future__ import annotations

import sys

import click

from .base import Command

EPILOG = """\
examples:
  ganlode submit --address http://HEAD:8265 -- mine --source zoo:digits-0to4 --source zoo:digits-5to9 \\
      --target mnist5k:7@100 --out s3://BUCKET/runs/mine7
  ganlode submit --address http://127.0.0.1:8265 --no-wait --runtime-env deploy/runtime_env.yaml -- \\
      tune --source zoo:digits-0to4 --target mnist5k:7@100 --method freezed --out s3://BUCKET/runs/tune7
  ganlode submit --address http://127.0.0.1:8265 --working-dir . -- \\
      pretrain --data mnist5k:0-4 --out s3://BUCKET/runs/d04 --steps 2000
  ganlode submit --address http://HEAD:8265 --entrypoint-num-cpus 4 --submission-id ft7-a -- \\
      transfer --source zoo:digits-0to4 --target mnist5k:7@25 --method finetune --out s3://BUCKET/runs/ft7

The command itself runs on the head unless it asks for resources: --entrypoint-num-cpus and
--entrypoint-num-gpus place it (not its actors, which ask for their own) on a node that has them.

The token of a cluster with token auth is read from RAY_AUTH_TOKEN, RAY_AUTH_TOKEN_PATH or
~/.ray/auth_token (KubeRay: kubectl get secret CLUSTER -o jsonpath='{.data.auth_token}' | base64 -d).
Exit status: 0 if the job SUCCEEDED, 1 if it FAILED or was STOPPED, 2 on bad input.
"""


def _default_address() -> str | None:
    from ..jobs.submit import default_address

    return default_address()


def job_command(words: tuple[str, ...] | list[str]) -> list[str]:
    """The ganlode command line to run on the cluster: the words after ``--``, without a leading ``ganlode``."""
    command = list(words)
    if command[:1] == ["--"]:
        command = command[1:]
    if command[:1] == ["ganlode"]:
        command = command[1:]
    return command


def _check(ctx: click.Context) -> None:
    command = job_command(ctx.params["command"])
    if not command:
        raise click.UsageError("name the ganlode command to run after --, e.g. "
                               "ganlode submit --address http://HEAD:8265 -- mine ...", ctx)
    if command[0] == "submit":
        raise click.UsageError("`ganlode submit -- submit ...` would submit from the cluster to itself: "
                               "name another command", ctx)


@click.command("submit", cls=Command, check=_check, epilog=EPILOG, context_settings={"allow_interspersed_args": False},
               short_help="run a ganlode command on a Ray cluster (Ray job submission)",
               help="Submit `ganlode COMMAND...` as a Ray job, print its id, follow its logs and exit with its outcome.")
@click.option("--address", default=_default_address, show_default=False, metavar="URL",
              help="the cluster's dashboard / job server, e.g. http://HEAD:8265 "
                   "(default: RAY_API_SERVER_ADDRESS or RAY_ADDRESS when they are http URLs)")
@click.option("--working-dir", metavar="DIR",
              help="a local folder uploaded as the job's working directory (configs, image folders)")
@click.option("--runtime-env", metavar="YAML", help="a Ray runtime environment file, e.g. deploy/runtime_env.yaml")
@click.option("--entrypoint-num-cpus", type=click.FloatRange(min=0), metavar="N",
              help="CPUs the command itself reserves, so it runs on a node with them (default: none, the head)")
@click.option("--entrypoint-num-gpus", type=click.FloatRange(min=0), metavar="N",
              help="GPUs the command itself reserves, so it runs on a GPU node (default: none)")
@click.option("--submission-id", metavar="ID",
              help="the job's id (default: Ray's raysubmit_...); one id names one job on a cluster")
@click.option("--no-wait", is_flag=True, help="print the job id and return at once")
@click.argument("command", nargs=-1, metavar="-- COMMAND...")
def command(address: str | None, working_dir: str | None, runtime_env: str | None, entrypoint_num_cpus: float | None,
            entrypoint_num_gpus: float | None, submission_id: str | None, no_wait: bool, command: tuple[str, ...]) -> int:
    from ..jobs import submit as jobs

    words = job_command(command)
    address = jobs.normalise_address(address)
    env = jobs.runtime_env(runtime_env, working_dir)
    headers = jobs.auth_headers()
    server_version = jobs.preflight(address, headers)
    job = jobs.submit(address, words, env, headers, server_version,
                      jobs.Placement(entrypoint_num_cpus, entrypoint_num_gpus, submission_id))
    print(job.job_id, flush=True)
    print(f"submitted `{job.entrypoint}` to {address} as {job.job_id}", file=sys.stderr)
    if no_wait:
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
