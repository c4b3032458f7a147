"""The sandbox: the whole homelab on this machine, and the story it plays.

`gitopsctl sandbox demo` starts a Lab (gitopsctl.sandbox.lab.lab), plays three pipelines
through the real CLI and judges each one by the git record and by what the services
answer; `sandbox up` keeps a Lab running for a person to explore. This package holds
the parts that do not talk to a terminal: the scenarios and their judgement (story),
the CLI runs (pipeline), the audit trail (audit), the work directory and signals
(session), proof that clean-up removed everything (leftovers), and the state file
`up` leaves for `down` (state).
"""
