"""Webhooks: endpoints per owner (sellers: their sales, payouts, refunds and settlements; admins:
every event), signed deliveries fanned out from the outbox and sent by jobs with retries, to the
Standard Webhooks specification."""

from datetime import timedelta

from app.registry import Manifest, MenuEntry, ModuleHooks

manifest = Manifest(
    name="webhook",
    version="0.1.0",
    summary="Signed webhooks (Standard Webhooks) fanned out from the outbox, with retries",
    depends=("user", "auth", "fetch", "marketplace"),
    settings=(
        "webhook_retry_schedule",
        "webhook_retry_jitter_percent",
        "webhook_timeout_seconds",
        "webhook_secret_overlap_seconds",
        "webhook_disable_after_days",
        "webhook_retention_days",
    ),
)


def load(hooks: ModuleHooks) -> None:
    from . import api, config, demo, fanout, health, jobs, screens, services

    hooks.setup(config.install)
    hooks.scope("webhooks:read", "Read webhook endpoints and deliveries", roles=("seller", "admin"))
    hooks.scope(
        "webhooks:write",
        "Create, change, test and delete webhook endpoints; retry deliveries",
        roles=("seller", "admin"),
    )
    hooks.subscribe("user.deactivated", services.disable_endpoints_of_deactivated)
    hooks.subscribe_all(fanout.fan_out)
    hooks.job(jobs.send_delivery)
    hooks.periodic(jobs.send_due_deliveries, every=timedelta(seconds=5))
    hooks.periodic(jobs.purge_expired, every=timedelta(hours=1))
    hooks.blueprint(api.blp, prefix="webhooks")
    hooks.health_section("webhooks", health.section)
    hooks.demo(demo.load_demo)
    hooks.screens(
        screens.screens,
        MenuEntry("Webhooks", "webhook_screens.endpoints", frozenset(api.OWNERS), order=91),
    )
