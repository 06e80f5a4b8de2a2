"""nbgrader's exchange, with submissions attributed to the unix user who made them.

nbgrader names a submission after the student it *claims* to be from (``alice+ch03+...``); a
student can claim any name (``nbgrader submit ch03 --student=alice``), and ``collect`` only
warns ("cheating attempt?") before filing it as alice's, where the newest submission replaces
hers.  On a hub where every student is a unix user (``lguest-book classroom hub``), the owner
of the submission's folder in the inbox is who really submitted it: :class:`OwnerCheckedCollect`
files each submission under its owner and says so when the claim differs.  The instructor's
``nbgrader_config.py`` written by the hub selects it (``ExchangeFactory.collect``).
"""

from __future__ import annotations

import os
import pwd

from nbgrader.exchange.default.collect import ExchangeCollect


class OwnerCheckedCollect(ExchangeCollect):
    """``nbgrader collect``, attributing each submission to the unix owner of its folder."""

    def _path_to_record(self, path):
        rec = super()._path_to_record(path)
        uid = os.lstat(path).st_uid
        try:
            owner = pwd.getpwuid(uid).pw_name
        except KeyError:
            owner = f"uid{uid}"
        if owner != rec["username"]:
            self.log.error("%s claims to come from %s but was submitted by unix user %s: collected as %s's",
                           os.path.basename(path), rec["username"], owner, owner)
            rec["username"] = owner
        return rec
