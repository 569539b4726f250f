"""The packages import one way: motion uses faces (alignment, plans), faces never imports motion."""

from __future__ import annotations

import subprocess
import sys


def test_faces_does_not_import_motion():
    code = (
        "import sys, fantasy_portrait.faces, fantasy_portrait.faces.plan, fantasy_portrait.faces.draw;"
        "print(sorted(m for m in sys.modules if m.startswith('fantasy_portrait.motion')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_plan_motion_lives_in_motion():
    import fantasy_portrait.faces.plan as plan
    from fantasy_portrait.motion import extract_plan_motion

    assert not hasattr(plan, "extract_plan_motion")
    assert extract_plan_motion.__module__ == "fantasy_portrait.motion.plan"
