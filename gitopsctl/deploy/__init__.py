"""The deploy engine: what git says is live, and every step that changes it.

  state       deploy and rollback records read from git log (what is live, superseded)
  plan        every edit of a stage, computed from the remote tip before the first push
  stage       groups of services deployed in order, all rolled back on any failure
  rollback    one revert commit for a source, then every target converged and verified
  converge    apply each target once per revision, wait for each service, or look once
  verify      read-only: every service runs and serves what git says is live
  status      live source, image and health per service; recent history
  automation  Flux image automation suspended by a rollback, resumed by a good stage

Commands parse options, build the production targets (gitopsctl/targets/factory.py) and
call one entry point here; nothing here imports the CLI, the console or a command, and
nothing here builds a target: a TargetSet (gitopsctl/targets) is passed in.
"""
