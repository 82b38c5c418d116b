"""python manage.py lora_evict [--budget-mb N] [--all]: shrink the LoRA cache (LRU first)."""

from django.core.management.base import BaseCommand
from django.template.defaultfilters import filesizeformat

from generation import services


class Command(BaseCommand):
    help = "Evict least-recently-used LoRAs until the cache fits its size budget."

    def add_arguments(self, parser):
        parser.add_argument(
            "--budget-mb",
            type=float,
            default=None,
            help="default: MYTHRAGEN_LORA_CACHE_BUDGET_MB (0 there: no limit)",
        )
        parser.add_argument("--all", action="store_true", help="evict every LoRA not in use")

    def handle(self, *args, **opts):
        budget = 0 if opts["all"] else opts["budget_mb"]
        report = services.lora_cache_evict(None if budget is None else int(budget * 1024 * 1024))
        self.stdout.write(
            f"LoRA cache {filesizeformat(report.before_bytes)} -> "
            f"{filesizeformat(report.after_bytes)} (budget "
            f"{filesizeformat(report.budget_bytes) if report.budget_bytes else 'none'}): "
            f"evicted {len(report.evicted)}, kept {report.kept_in_use} in use"
        )
        for key in report.evicted:
            self.stdout.write(f"  evicted {key}")
