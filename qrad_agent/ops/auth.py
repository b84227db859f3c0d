"""Who may change things through the local API: root, or a member of the privileged group.

The peer's uid and gid come from the kernel (SO_PEERCRED), so they cannot be forged by the client;
supplementary groups are looked up from the user database (getgrouplist(3)).
"""

from __future__ import annotations

import grp
import os
import pwd

from qrad_agent.api.server import Peer


def is_privileged(peer: Peer, group: str | None) -> bool:
    """True for uid 0, or when ``group`` is set and the peer's user belongs to it."""
    if peer.uid == 0:
        return True
    if not group:
        return False
    try:
        gid = grp.getgrnam(group).gr_gid
        user = pwd.getpwuid(peer.uid).pw_name
    except KeyError:
        return False
    return peer.gid == gid or gid in os.getgrouplist(user, peer.gid)
