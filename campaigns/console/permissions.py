"""Roles and what each may do: the permission table, as plain data the routes check.

Every console route and action declares one Permission (campaigns.console.guard's
`requires`); a role holds the permissions listed for it here and nothing else. Hiding a
button is never the check: the server refuses the request.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping

__all__ = ["PERMISSIONS", "Permission", "Role", "allowed"]


class Role(enum.StrEnum):
    """A console user's role (console_users.role)."""

    VIEWER = "viewer"  # dashboards and statistics; never a patient's address
    EDITOR = "editor"  # writes campaigns and newsletters, submits them for review
    REVIEWER = "reviewer"  # approves or rejects a submission (never their own), publishes
    ADMIN = "admin"  # people, settings, contacts, everything else


class Permission(enum.StrEnum):
    """One thing a route or action does."""

    OWN_SESSION = "own-session"  # sign out, see who you are
    VIEW_DASHBOARD = "view-dashboard"
    VIEW_STATISTICS = "view-statistics"
    VIEW_CAMPAIGNS = "view-campaigns"  # a campaign's emails and settings (no patient data)
    EDIT_CAMPAIGNS = "edit-campaigns"  # create, edit, upload an article
    SUBMIT = "submit"  # submit a campaign or newsletter for review
    SEND_TEST = "send-test"  # a test email to one's own address
    REVIEW = "review"  # approve or reject a submission (never one's own)
    PUBLISH = "publish"
    PAUSE = "pause"  # pause and resume a campaign
    EDIT_NEWSLETTERS = "edit-newsletters"
    SCHEDULE_NEWSLETTERS = "schedule-newsletters"
    MANAGE_CONTACTS = "manage-contacts"  # import, look up, export, erase: patient data
    MANAGE_USERS = "manage-users"
    MANAGE_SETTINGS = "manage-settings"
    VIEW_AUDIT = "view-audit"


_P = Permission
_EVERYONE = frozenset({_P.OWN_SESSION, _P.VIEW_DASHBOARD, _P.VIEW_STATISTICS, _P.VIEW_CAMPAIGNS})

PERMISSIONS: Mapping[Role, frozenset[Permission]] = {
    Role.VIEWER: _EVERYONE,
    Role.EDITOR: _EVERYONE
    | {_P.EDIT_CAMPAIGNS, _P.SUBMIT, _P.SEND_TEST, _P.EDIT_NEWSLETTERS, _P.PAUSE},
    Role.REVIEWER: _EVERYONE
    | {_P.REVIEW, _P.PUBLISH, _P.PAUSE, _P.SEND_TEST, _P.SCHEDULE_NEWSLETTERS},
    Role.ADMIN: frozenset(Permission),
}


def allowed(role: str, permission: Permission) -> bool:
    """Whether `role` holds `permission` (an unknown role holds nothing)."""
    try:
        return permission in PERMISSIONS[Role(role)]
    except ValueError:
        return False
