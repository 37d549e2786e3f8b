"""Which Chinese script a text is written in, for teams whose brand voice is Traditional Chinese.

OpenCC (the converter Wikipedia and most input methods use) decides what each character would become
in the other script. A character counts as Simplified when the Simplified → Traditional conversion
changes it and the reverse leaves it as it is. Some characters
are both: 台, 里, 了, 周, 只 are correct Taiwanese writing and also the Simplified form of 臺, 裏, 瞭,
週, 隻. SHARED lists them, so that a Taiwanese answer is never flagged for them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache

from .text import CJK_CHARACTERS

# Characters that OpenCC's Simplified → Traditional character table maps to themselves among other
# candidates (its STCharacters.txt lines whose key is also one of the values, 170 of them): correct in
# Traditional text, never evidence of Simplified script on their own.
SHARED = frozenset(
    "㐹万丑丰了于云亘仆仇价仿伙余佛佣俊修借僵克党冬准凌几凶出划刮制千升卜占卷厂厘只台叶吁吃合吊同后向周咨咸咽哄唇喂"
    "噪回困夫夸奸姜娘它家尸局岩岳巨布帘席干幸广庵弦彩征御志念恤愈愿戚才扎托扣折抵拐挂挨挽据搜斗旋昆暗曲朱朴杆杠杯杰"
    "松板极柜栗核梁欲沈沾泛注涂涌淀游漓熏玩璇症皂矩确私秋种筑系胄背胜胡腊腌膻致舍芸苔苹范荐蒙蔑虫蚝蜡蝎表谷跖辟适郁"
    "酸采里雕面"
)
_CJK = re.compile(rf"[{CJK_CHARACTERS}]")


@cache
def _converters():
    try:
        import opencc
    except ImportError as error:  # a dependency of buxiban; missing only in a broken install
        raise RuntimeError("the script check needs OpenCC: pip install opencc") from error
    return opencc.OpenCC("s2t"), opencc.OpenCC("t2s")


@cache
def _kind(char: str) -> str:
    """ "simplified", "traditional" or "" (both scripts write it) for one character. Characters alone,
    not phrases: OpenCC's phrase tables also rewrite word choices (家具 → 傢俱), which is not script."""
    if char in SHARED or not _CJK.match(char):
        return ""
    to_traditional, to_simplified = _converters()
    if to_simplified.convert(char) != char:
        return "traditional"
    return "simplified" if to_traditional.convert(char) != char else ""


@dataclass(frozen=True)
class Script:
    traditional: int  # characters only Traditional script writes
    simplified: str  # the characters only Simplified script writes, in order

    @property
    def name(self) -> str | None:
        """ "traditional", "simplified", "mixed", or None when no character tells the scripts apart."""
        if self.simplified and self.traditional:
            return "mixed"
        if self.simplified:
            return "simplified"
        return "traditional" if self.traditional else None


def script_of(text: str) -> Script:
    if not _CJK.search(text):
        return Script(0, "")
    kinds = [(char, _kind(char)) for char in text]
    return Script(sum(kind == "traditional" for _, kind in kinds), "".join(c for c, k in kinds if k == "simplified"))


def is_traditional_text(text: str) -> bool:
    """Written in Traditional script: at least one Traditional-only character and no Simplified one."""
    return script_of(text).name == "traditional"
