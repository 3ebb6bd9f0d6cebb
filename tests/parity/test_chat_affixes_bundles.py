"""Every tiny family bundle carries chat affixes (llm.chat_affixes) that render the grid of
conversations exactly as the bundle's chat template does (render_chat), and says so in its
provenance; the native library renders chat prompts from these affixes."""

from __future__ import annotations

import pytest
from chat_affixes_support import assert_renders_alike, conversations

from edge.bundle import load_manifest
from edge.export.registry import families

LLM_FAMILIES = sorted(name for name, spec in families().items() if spec.llm is not None)


@pytest.mark.parametrize("family", LLM_FAMILIES)
def test_each_family_bundle_renders_alike_through_its_affixes(family, request):
    _, m = load_manifest(request.getfixturevalue(f"tiny_{family}_bundle"))
    assert m.provenance["chat_affixes"] == "ok"
    assert m.llm.chat_affixes is not None
    assert assert_renders_alike(m.llm.chat_affixes, m.llm, m.prompt, conversations(m.prompt.image_marker)) == 72
