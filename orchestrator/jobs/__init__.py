"""Running ganlode commands on a remote Ray cluster (:mod:`.submit`: the job-submission client)."""
