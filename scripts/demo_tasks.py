"""Small instruction-style tasks (Chinese + English) over every common Chinese character.

Part of the demo model's corpus (see ``demo_corpus.py``): copy, reverse, reorder, wrap,
prefix/suffix, join/split, translate word lists, digit mapping and answer templates. Inputs are
cut from shuffled passes over the GB 2312 level-1 characters, so every one of the 3,755
characters appears in context (in the input and usually in the answer) a fixed number of times.
The LoRA demo tasks (``demo_lora_tasks.py``) are deliberately absent from this corpus.
"""

from __future__ import annotations

import random
from collections.abc import Callable

from demo_corpus import QA

# fmt: off
CJK_PUNCT = list("，。、；：？！“”‘’（）《》〈〉【】「」『』…—～·％＋－＝／")
WRAPPERS = [("（", "）"), ("《", "》"), ("【", "】"), ("「", "」"), ("“", "”"), ("『", "』"),
            ("〈", "〉"), ("‘", "’"), ("[", "]"), ("(", ")"), ("<", ">"), ('"', '"'), ("*", "*")]
PREFIXES = ["答：", "注意：", "标题：", "结果：", "你好，", "今天", "我说：", "题目：", "回答："]
SUFFIXES = ["。", "！", "？", "吧", "啊", "了", "的", "……", "。谢谢！", "，好吗？"]
CN_DIGITS = "零一二三四五六七八九"
# (Chinese, English) word list for translation tasks.
DICTIONARY = [tuple(p.split()) for p in """
猫 cat|狗 dog|鸟 bird|鱼 fish|马 horse|牛 cow|羊 sheep|猪 pig|鸡 chicken|鸭 duck|虎 tiger|
熊 bear|兔 rabbit|蛇 snake|龙 dragon|苹果 apple|香蕉 banana|西瓜 watermelon|葡萄 grape|
桃 peach|梨 pear|米饭 rice|面包 bread|牛奶 milk|鸡蛋 egg|茶 tea|咖啡 coffee|水 water|
汤 soup|糖 sugar|盐 salt|红 red|黄 yellow|蓝 blue|绿 green|白 white|黑 black|紫 purple|
一 one|二 two|三 three|四 four|五 five|六 six|七 seven|八 eight|九 nine|十 ten|
太阳 sun|月亮 moon|星星 star|天空 sky|云 cloud|雨 rain|雪 snow|风 wind|山 mountain|
河 river|海 sea|湖 lake|树 tree|花 flower|草 grass|石头 stone|火 fire|书 book|笔 pen|
纸 paper|桌子 table|椅子 chair|门 door|窗 window|房子 house|车 car|船 boat|飞机 plane|
路 road|城市 city|学校 school|医院 hospital|商店 shop|公园 park|朋友 friend|老师 teacher|
学生 student|医生 doctor|妈妈 mother|爸爸 father|哥哥 brother|姐姐 sister|孩子 child|
头 head|手 hand|脚 foot|眼睛 eye|耳朵 ear|嘴 mouth|心 heart|春天 spring|夏天 summer|
秋天 autumn|冬天 winter|早上 morning|晚上 evening|今天 today|明天 tomorrow|昨天 yesterday|
大 big|小 small|高 tall|长 long|短 short|新 new|旧 old|快 fast|慢 slow|好 good|坏 bad|
热 hot|冷 cold|开心 happy|难过 sad|吃 eat|喝 drink|走 walk|跑 run|看 look|听 listen|
说 speak|写 write|读 read|唱 sing|睡 sleep|买 buy|卖 sell|爱 love|学习 study|工作 work|
电脑 computer|手机 phone|音乐 music|电影 movie|时间 time|问题 question|答案 answer|
世界 world|国家 country|语言 language|名字 name|钱 money|颜色 color|数字 number""".
    replace("\n", "").split("|")]
_EN_EXTRA = (
    "the a an is are was and or but not with from into over under this that these those you "
    "we they he she it my your our data model code test list word text line file user value "
    "system input output server client token train learn small quick brown lazy jumps happy "
    "open close start stop first last next red green blue light dark")
EN_WORDS = [en for _, en in DICTIONARY] + _EN_EXTRA.split()
# fmt: on
Maker = Callable[[random.Random, str], QA]


def gb2312_level1() -> list[str]:
    """The 3,755 GB 2312 level-1 characters, in code order (bytes 0xB0A1..0xD7F9)."""
    chars = []
    for hi in range(0xB0, 0xD8):
        for lo in range(0xA1, 0xFF):
            try:
                chars.append(bytes([hi, lo]).decode("gb2312"))
            except UnicodeDecodeError:  # 0xD7FA..0xD7FE are unassigned
                continue
    return chars


def char_pieces(rng: random.Random, passes: int, low: int = 2, high: int = 8) -> list[str]:
    """``passes`` shuffled passes over the level-1 characters, cut into pieces of low..high."""
    stream: list[str] = []
    for _ in range(passes):
        chars = gb2312_level1()
        rng.shuffle(chars)
        stream += chars
    pieces, i = [], 0
    while i < len(stream):
        n = rng.randint(low, high)
        pieces.append("".join(stream[i : i + n]))
        i += n
    return pieces


def _ask(rng: random.Random, instructions: list[str], text: str) -> str:
    return f"{rng.choice(instructions)}\n{text}"


def _copy(rng: random.Random, s: str) -> QA:
    prompts = ["请重复：", "复述一下：", "跟我说一遍：", "请原样输出：", "Repeat:", "Copy this:"]
    return QA(_ask(rng, prompts, s), s)


def _reverse(rng: random.Random, s: str) -> QA:
    prompts = ["把这些字倒过来写：", "倒序输出：", "从后往前读一遍：", "Reverse the characters:"]
    return QA(_ask(rng, prompts, s), s[::-1])


def _wrap(rng: random.Random, s: str) -> QA:
    left, right = rng.choice(WRAPPERS)
    prompts = [f"用{left}{right}把下面的内容括起来：", f"Wrap it in {left}{right}:"]
    return QA(_ask(rng, prompts, s), f"{left}{s}{right}")


def _affix(rng: random.Random, s: str) -> QA:
    if rng.random() < 0.5:
        p = rng.choice(PREFIXES)
        return QA(_ask(rng, [f"在前面加上“{p}”：", f"Add “{p}” in front:"], s), p + s)
    x = rng.choice(SUFFIXES)
    return QA(_ask(rng, [f"在后面加上“{x}”：", f"Add “{x}” at the end:"], s), s + x)


def _punct(rng: random.Random, s: str) -> QA:
    mark = rng.choice(CJK_PUNCT)
    return QA(_ask(rng, [f"在末尾加上标点“{mark}”：", f"End it with “{mark}”:"], s), s + mark)


def _join(rng: random.Random, s: str) -> QA:
    sep, name = rng.choice(
        [(" ", "空格"), ("、", "顿号"), ("，", "逗号"), ("-", "短横线"), ("/", "斜线")]
    )
    if rng.random() < 0.7:
        return QA(
            _ask(rng, [f"用{name}隔开每个字：", f"Separate the characters with “{sep}”:"], s),
            sep.join(s),
        )
    return QA(_ask(rng, [f"去掉所有的{name}：", f"Remove every “{sep}”:"], sep.join(s)), s)


def _twice(rng: random.Random, s: str) -> QA:
    return QA(_ask(rng, ["说两遍：", "重复两次：", "Say it twice:"], s), f"{s}，{s}")


def _words(s: str) -> list[str]:
    return [s[i : i + 2] for i in range(0, len(s), 2)]


def _reorder(rng: random.Random, s: str) -> QA:
    words = _words(s) if len(s) >= 4 else list(s)
    sep = rng.choice(["、", "，", " "])
    if rng.random() < 0.6:
        prompts = [
            "把这些词倒序排列：",
            "按相反的顺序写出这些词：",
            "Reverse the order of the words:",
        ]
        return QA(_ask(rng, prompts, sep.join(words)), sep.join(words[::-1]))
    rotated = words[1:] + words[:1]
    prompts = ["把第一个词移到最后：", "Move the first word to the end:"]
    return QA(_ask(rng, prompts, sep.join(words)), sep.join(rotated))


def _template(rng: random.Random, s: str) -> QA:
    kind = rng.randrange(4)
    if kind == 0:
        return QA(f"“{s}”的第一个字是什么？", f"“{s}”的第一个字是“{s[0]}”。")
    if kind == 1:
        return QA(f"“{s}”的最后一个字是什么？", f"“{s}”的最后一个字是“{s[-1]}”。")
    if kind == 2:
        return QA(f"“{s}”有几个字？", f"“{s}”有{len(s)}个字。")
    return QA(
        f'What is the first character of "{s}"?', f'The first character of "{s}" is "{s[0]}".'
    )


CHAR_TASKS: list[Maker] = [
    _copy,
    _copy,
    _reverse,
    _wrap,
    _wrap,
    _affix,
    _punct,
    _join,
    _twice,
    _reorder,
    _reorder,
    _template,
]


def _translate(rng: random.Random) -> QA:
    pairs = rng.sample(DICTIONARY, rng.randint(1, 4))
    zh, en = "、".join(p[0] for p in pairs), ", ".join(p[1] for p in pairs)
    if rng.random() < 0.5:
        return QA(_ask(rng, ["翻译成英文：", "Translate into English:"], zh), en)
    return QA(_ask(rng, ["翻译成中文：", "Translate into Chinese:"], en), zh)


def _digits(rng: random.Random) -> QA:
    num = "".join(rng.choice("0123456789") for _ in range(rng.randint(2, 6)))
    cn = "".join(CN_DIGITS[int(d)] for d in num)
    if rng.random() < 0.5:
        return QA(_ask(rng, ["把数字换成汉字：", "Write the digits in Chinese:"], num), cn)
    return QA(_ask(rng, ["把汉字换成数字：", "Write it with digits:"], cn), num)


def _english(rng: random.Random) -> QA:
    words = rng.sample(EN_WORDS, rng.randint(2, 5))
    text, kind = " ".join(words), rng.randrange(6)
    if kind == 0:
        return QA(_ask(rng, ["Repeat:", "请重复："], text), text)
    if kind == 1:
        return QA(_ask(rng, ["Make it upper case:", "改成大写字母："], text), text.upper())
    if kind == 2:
        return QA(
            _ask(rng, ["Reverse the order of the words:", "把单词倒序排列："], text),
            " ".join(words[::-1]),
        )
    if kind == 3:
        left, right = rng.choice(WRAPPERS)
        return QA(_ask(rng, [f"Wrap it in {left}{right}:"], text), f"{left}{text}{right}")
    if kind == 4:
        return QA(_ask(rng, ["Spell the first word:"], text), "-".join(words[0]))
    return QA(f'How many words are in "{text}"?', f'"{text}" has {len(words)} words.')


def build_task_pairs(seed: int, passes: int, extra: int) -> list[QA]:
    """``passes`` passes over the level-1 characters as task inputs, plus ``extra`` each of
    translation, digit and English tasks."""
    rng = random.Random(seed + 18)
    pairs = [rng.choice(CHAR_TASKS)(rng, s) for s in char_pieces(rng, passes)]
    # Every punctuation mark in context a few times (after a random piece of characters).
    pieces = char_pieces(rng, 1)
    for i, mark in enumerate(CJK_PUNCT * 8):
        s = pieces[i % len(pieces)]
        pairs.append(QA(f"在末尾加上标点“{mark}”：\n{s}", s + mark))
    for make in (_translate, _digits, _english):
        pairs += [make(rng) for _ in range(extra)]
    return pairs
