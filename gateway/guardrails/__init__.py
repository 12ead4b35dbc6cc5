"""Guardrails: checks on what goes in and what comes out, defined once in the rules and attached
per route (:mod:`~gateway.guardrails.specs`); the kinds of check (:mod:`~gateway.guardrails.kinds`,
:mod:`~gateway.guardrails.pii`); a snapshot's checks (:mod:`~gateway.guardrails.engine`); the input
and output stages (:mod:`~gateway.guardrails.stages`); streams held back until checked
(:mod:`~gateway.guardrails.stream`)."""
