"""Pulumi policy pack: `pulumi preview -s standby --policy-pack policy`.

The rules live in `standby.security_rules`, where the tests run them too; this file only registers them.
"""

from pulumi_policy import EnforcementLevel, PolicyPack, StackValidationPolicy

from standby.security_rules import validate_stack

PolicyPack(
    name="standby-security",
    enforcement_level=EnforcementLevel.MANDATORY,
    policies=[
        StackValidationPolicy(
            name="standby-security-rules",
            description="Backups locked down, databases private and kept, no wildcard IAM actions, no task "
            "role that can steer a recovery, an unguessable drill route, MAC keys only their writers can use.",
            validate=validate_stack,
        )
    ],
)
