"""The emoji datasets: parsing Unicode's list, rendering in colour, the cache, the split by emoji, specs.

Rendering tests draw a small list written here (real code points, Unicode's file format) with
the real font, so they take a fraction of a second and do not depend on the unicode-data version.
"""

from __future__ import annotations

import math
import os

import numpy as np
import pytest

from ganlode.orchestrator import data
from ganlode.orchestrator.data import datasets, emoji
from ganlode.orchestrator.errors import UserError

needs_font = pytest.mark.skipif(not os.path.isfile(emoji.FONT_PATH), reason=f"no emoji font: {emoji.APT_INSTALL}")
needs_list = pytest.mark.skipif(not os.path.isfile(emoji.LIST_PATH), reason=f"no emoji list: {emoji.APT_INSTALL}")

# (group, subgroup, code points) in Unicode's order; statuses other than fully-qualified are skipped
SMALL_LIST = """\
# emoji-test.txt (a small list in Unicode's format)
# group: Smileys & Emotion

# subgroup: face-smiling
1F600                                                  ; fully-qualified     # 😀 E1.0 grinning face
1F603                                                  ; fully-qualified     # 😃 E0.6 grinning face with big eyes
1F604                                                  ; fully-qualified     # 😄 E0.6 grinning face with smiling eyes
1F601                                                  ; fully-qualified     # 😁 E0.6 beaming face with smiling eyes

# subgroup: face-affection
1F970                                                  ; fully-qualified     # 🥰 E11.0 smiling face with hearts
263A FE0F                                              ; fully-qualified     # ☺️ E0.6 smiling face
263A                                                   ; unqualified         # ☺ E0.6 smiling face

# group: People & Body

# subgroup: person
1F9D1                                                  ; fully-qualified     # 🧑 E5.0 person

# subgroup: person-role
1F9D1 200D 1F680                                       ; fully-qualified     # 🧑‍🚀 E12.1 astronaut
1F9D1 1F3FB 200D 1F680                                 ; fully-qualified     # 🧑🏻‍🚀 E12.1 astronaut: light skin tone
1F9D1 200D 2708                                        ; minimally-qualified # 🧑‍✈ E12.1 pilot

# group: Component

# subgroup: skin-tone
1F3FB                                                  ; component           # 🏻 E1.0 light skin tone

# group: Animals & Nature

# subgroup: animal-mammal
1F435                                                  ; fully-qualified     # 🐵 E0.6 monkey face
1F98A                                                  ; fully-qualified     # 🦊 E3.0 fox
1F43A                                                  ; fully-qualified     # 🐺 E0.6 wolf
1F431                                                  ; fully-qualified     # 🐱 E0.6 cat face

# subgroup: animal-bird
1F414                                                  ; fully-qualified     # 🐔 E0.6 chicken
1F426                                                  ; fully-qualified     # 🐦 E0.6 bird

# group: Travel & Places

# subgroup: sky & weather
2600 FE0F                                              ; fully-qualified     # ☀️ E0.7 sun
2601 FE0F                                              ; fully-qualified     # ☁️ E0.6 cloud

# group: Flags

# subgroup: country-flag
1F1E9 1F1EA                                            ; fully-qualified     # 🇩🇪 E0.6 flag: Germany
1F1EF 1F1F5                                            ; fully-qualified     # 🇯🇵 E0.6 flag: Japan
1F1E7 1F1F7                                            ; fully-qualified     # 🇧🇷 E2.0 flag: Brazil
"""
PER_GROUP = 6  # small: a group of n emoji gets ceil(6 / n) variants each


@pytest.fixture
def small(monkeypatch, tmp_path):
    """The small list above as the emoji list, a fresh cache folder and fresh dataset caches."""
    path = tmp_path / "emoji-test.txt"
    path.write_text(SMALL_LIST, encoding="utf-8")
    monkeypatch.setattr(emoji, "LIST_PATH", str(path))
    monkeypatch.setattr(emoji, "PER_GROUP", PER_GROUP)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    data.clear_caches()
    yield emoji.read_list()
    data.clear_caches()


def _emoji_of(name: str) -> np.ndarray:
    """The emoji index of every image of a loaded emoji dataset (same order as the render)."""
    return emoji.load(datasets.EMOJI[name][0]).emoji_of


# ---------------------------------------------------------------- the list


def test_list_parsing_keeps_fully_qualified_and_slugs_names(small):
    entries = small
    assert len(entries) == 20  # unqualified, minimally-qualified and component lines are skipped
    assert emoji.class_names("group", entries) == ["smileys-emotion", "people-body", "animals-nature", "travel-places", "flags"]
    assert emoji.class_names("subgroup", entries) == ["face-smiling", "face-affection", "person", "person-role",
                                                      "animal-mammal", "animal-bird", "sky-weather", "country-flag"]
    assert entries[5] == emoji.Emoji("\u263a\ufe0f", "smileys-emotion", "face-affection")
    assert entries[7].sequence == "\U0001f9d1\u200d\U0001f680"
    assert emoji.slug("Food & Drink") == "food-drink" and emoji.slug(" arts & crafts ") == "arts-crafts"
    # ceil(PER_GROUP / n) variants per emoji: 6 smileys -> 1, 3 people -> 2, 6 animals -> 1, 2 -> 3, 3 flags -> 2
    counts = emoji.variant_counts(entries)
    assert counts.tolist() == [1] * 6 + [2] * 3 + [1] * 6 + [3] * 2 + [2] * 3


@needs_list
def test_the_real_list_has_unicodes_nine_groups_and_enough_images_each():
    entries = emoji.read_list()
    assert emoji.class_names("group", entries) == ["smileys-emotion", "people-body", "animals-nature", "food-drink",
                                                   "travel-places", "activities", "objects", "symbols", "flags"]
    subgroups = emoji.class_names("subgroup", entries)
    assert {"animal-mammal", "food-fruit", "face-smiling", "country-flag"} <= set(subgroups)
    assert all(s == emoji.slug(s) for s in subgroups) and len(subgroups) == len(set(subgroups))
    counts = emoji.variant_counts(entries)
    for group in emoji.class_names("group", entries):
        n = sum(e.group == group for e in entries)
        images = int(sum(c for c, e in zip(counts, entries) if e.group == group))
        assert 85 <= n and emoji.PER_GROUP <= images < emoji.PER_GROUP + n


# ---------------------------------------------------------------- rendering


@needs_font
def test_render_shapes_colour_centring_and_determinism(small):
    entries = small
    r = emoji.render(entries, 32)
    counts = emoji.variant_counts(entries)
    assert r.images.shape == (int(counts.sum()), 3, 32, 32) and r.images.dtype == np.uint8
    assert r.emoji_of.tolist() == np.repeat(np.arange(len(entries)), counts).tolist()
    first = np.concatenate([[0], np.cumsum(counts)[:-1]])  # each emoji's plain variant
    for k in first:
        img = r.images[k].astype(int)
        border = np.concatenate([img[:, 0], img[:, -1], img[:, :, 0], img[:, :, -1]], 1)
        assert border.min() >= 250 and img[:, 0, 0].tolist() == [255] * 3  # on white, nothing cut
        ink = np.argwhere((img < 250).any(0))
        centre = (ink.min(0) + ink.max(0)) / 2
        assert np.abs(centre - 15.5).max() <= 1.0  # centred by its bounding box
    fox = r.images[first[10]].astype(int)
    assert np.abs(fox[0] - fox[2]).max() > 100  # colour: red and blue differ (an orange fox)
    # a ZWJ sequence is its own glyph, not its first code point (the person)
    assert np.abs(r.images[first[7]].astype(int) - r.images[first[6]].astype(int)).mean() > 10
    # variants move the emoji; the same list renders the same bytes
    assert not np.array_equal(r.images[first[6]], r.images[first[6] + 1])
    again = emoji.render(entries, 32)
    assert again.images.tobytes() == r.images.tobytes()
    assert emoji.render(entries[:2], 64).images.shape == (6, 3, 64, 64)  # a group of 2: 3 variants each


@needs_font
def test_second_load_comes_from_the_cache(small, monkeypatch):
    first = emoji.load(32)
    path = emoji.cache_path(32, small)
    assert os.path.isfile(path) and os.path.dirname(path) == emoji.cache_dir()
    assert not [n for n in os.listdir(emoji.cache_dir()) if n.startswith(".tmp")]  # written atomically

    real_render = emoji.render

    def no_render(*args, **kwargs):
        raise AssertionError("rendered again")

    monkeypatch.setattr(emoji, "render", no_render)
    second = emoji.load(32)
    assert second.images.tobytes() == first.images.tobytes() and second.entries == first.entries
    with open(path, "wb") as f:  # a damaged cache file is rendered again, not trusted
        f.write(b"not a zip")
    monkeypatch.setattr(emoji, "render", real_render)
    assert emoji.load(32).images.tobytes() == first.images.tobytes()
    assert emoji._read_cache(path, 32, first.emoji_of) is not None  # and written again


def test_missing_font_or_list_is_one_line_exit_2(small, monkeypatch, tmp_path, capsys):
    from ganlode.orchestrator.cli.main import main

    absent = str(tmp_path / "absent")
    for attr in ("FONT_PATH", "LIST_PATH"):
        real = getattr(emoji, attr)
        monkeypatch.setattr(emoji, attr, absent)
        data.clear_caches()
        assert main(["data", "show", "emoji:flags@4"]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and err.startswith("error: ") and absent in err
        assert "apt-get install -y fonts-noto-color-emoji unicode-data" in err
        monkeypatch.setattr(emoji, attr, real)
    monkeypatch.setattr(emoji, "LIST_PATH", absent)
    with pytest.raises(UserError, match="apt-get install -y fonts-noto-color-emoji unicode-data"):
        data.class_names("emoji-sub")


def test_doctor_checks_the_files_the_dataset_reads():
    from ganlode.orchestrator.cli import doctor

    assert (doctor.EMOJI_FONT, doctor.EMOJI_LIST) == (emoji.FONT_PATH, emoji.LIST_PATH)


# ---------------------------------------------------------------- specs and the split


@needs_font
def test_specs_name_groups_and_subgroups(small):
    assert data.class_names("emoji") == emoji.class_names("group", small)
    assert data.class_names("emoji-sub64") == emoji.class_names("subgroup", small)
    t = data.load_target("emoji:animals-nature,flags@4")
    assert t.counts() == {("emoji", "animals-nature"): 2, ("emoji", "flags"): 2}
    assert t.images.shape == (4, 3, 32, 32) and t.channels == 3
    sub = data.load_target("emoji-sub:animal-mammal,Country-Flag@4", seed=1)
    assert sub.counts() == {("emoji-sub", "animal-mammal"): 2, ("emoji-sub", "country-flag"): 2}
    assert data.load_target("emoji64:0").resolution == 64  # indices work as for every dataset
    with pytest.raises(UserError, match="emoji has no class 'animal-mammal'.*is a Unicode subgroup: write emoji-sub:animal-mammal"):
        data.load_target("emoji:animal-mammal")  # a subgroup is a class of emoji-sub, not of emoji
    with pytest.raises(UserError, match="is a Unicode group: write emoji64:flags$"):
        data.load_target("emoji-sub64:Flags")
    with pytest.raises(UserError, match="differ in image size"):
        data.load_target("emoji:flags+emoji64:people-body")


@needs_font
def test_cli_shows_an_emoji_grid(small, tmp_path, capsys):
    from PIL import Image

    from ganlode.orchestrator.cli.main import main

    out = tmp_path / "grid.png"
    assert main(["data", "show", "emoji64:animals-nature@2", "--out", str(out)]) == 0
    assert "64x64, 3 channels" in capsys.readouterr().out
    assert Image.open(out).mode == "RGB"


@needs_font
def test_split_is_by_emoji_once_and_for_all(small):
    by_group, by_sub = datasets.builtin_dataset("emoji"), datasets.builtin_dataset("emoji-sub")
    big = datasets.builtin_dataset("emoji64")
    emoji_of = _emoji_of("emoji")
    entries = small
    sub_names = emoji.class_names("subgroup", entries)
    pools = {}
    for source in (by_group, by_sub, big):
        split_of = np.full(len(source.images), "", object)
        for split in ("train", "val", "test"):
            for idx in source.pool(split):
                assert (split_of[idx] == "").all()  # the three pools are disjoint
                split_of[idx] = split
        assert (split_of != "").all()  # and cover every image
        for e in range(len(entries)):  # all variants of an emoji share one pool
            assert len(set(split_of[emoji_of == e])) == 1
        pools[source.name] = split_of
    # both labellings and both resolutions share one split
    assert (pools["emoji"] == pools["emoji-sub"]).all() and (pools["emoji"] == pools["emoji64"]).all()
    # the held-out rule on each subgroup's emoji: ceil(30%) held out, floor of half of them for validation
    for name in sub_names:
        members = [e for e, entry in enumerate(entries) if entry.subgroup == name]
        kinds = [pools["emoji"][emoji_of == e][0] for e in members]
        n = len(members)
        held = 0 if n < 2 else max(1, math.ceil(n * 0.3))
        assert (kinds.count("val"), kinds.count("test")) == (held // 2, held - held // 2), name
    # a group's training images are its subgroups' training images
    g = by_group.labels.index("animals-nature")
    subs = [by_sub.labels.index(s) for s in ("animal-mammal", "animal-bird")]
    assert by_group.train[g].tolist() == sorted(np.concatenate([by_sub.train[s] for s in subs]).tolist())
    # seeds draw from the fixed training pool only
    held_bytes = {a.tobytes() for a in data.to_uint8(data.load_target("emoji:animals-nature", split="eval").images)}
    for seed in (0, 3):
        drawn = data.load_target("emoji:animals-nature@2", seed=seed)
        assert not ({a.tobytes() for a in data.to_uint8(drawn.images)} & held_bytes)
