"""Create or reset the demo superuser (used by `make run`)."""

from __future__ import annotations

import os
from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError, CommandParser


class Command(BaseCommand):
    help = (
        "Make sure a superuser USERNAME exists with the password in "
        "$DJANGO_SUPERUSER_PASSWORD (created or reset; idempotent)."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("username")

    def handle(self, *args: Any, **options: Any) -> None:
        password = os.environ.get("DJANGO_SUPERUSER_PASSWORD", "")
        if not password:
            raise CommandError("Set DJANGO_SUPERUSER_PASSWORD to the password to use.")
        User = get_user_model()
        user, created = User.objects.get_or_create(
            username=options["username"], defaults={"is_staff": True, "is_superuser": True}
        )
        user.is_staff = user.is_superuser = user.is_active = True
        user.set_password(password)
        user.save()
        verb = "Created" if created else "Updated"
        if options["verbosity"] >= 1:
            self.stdout.write(f"{verb} superuser {user.get_username()!r}.")
