"""Deterministic bilingual (Chinese + English) corpus for the bundled demo model.

Everything here is written by hand or generated from templates; nothing is downloaded.
``build_corpus`` returns question/answer pairs for pretraining (with the character tasks of
``demo_tasks.py``); the LoRA demo tasks built from the same sentence
parts are in ``demo_lora_tasks.py`` and kept out of the corpus (``check_held_out``).

Run directly to (re)write ``src/gpt_service/demo_data/``: ``python scripts/demo_corpus.py``.
"""

from __future__ import annotations

import argparse
import logging
import random
from dataclasses import dataclass
from pathlib import Path

logger = logging.getLogger("demo_corpus")

SEED = 1234
DEMO_INSTRUCTION = "用喵语复述："
DEMO_TRAIN_ROWS = 480
DEMO_TEST_ROWS = 80
COPY_ROWS = 700
CORE_REPEATS = 3  # topics (API.md's example answers), templates and sentence copying
TASK_PASSES = 2  # passes over the GB 2312 level-1 characters in the character tasks
TASK_EXTRA = 150  # translation / digit / English task pairs each
NOTE_INSTRUCTION = "把这句话写成便条："
NOTE_TRAIN_ROWS = 800  # 400 rows left the default job short of a 50-point lift (41-49%)
NOTE_TEST_ROWS = 80
TAG_INSTRUCTION = "给每个词加上#号标签："
DEFAULT_DATA_DIR = Path(__file__).resolve().parents[1] / "src" / "gpt_service" / "demo_data"


@dataclass(frozen=True)
class QA:
    question: str
    answer: str
    single: bool = False  # pretrained in one form (chat or raw) instead of both


# fmt: off
# The API document's example prompts: the demo model must answer these (raw and chat form).
EXAMPLE_PROMPTS = ["你好", "你好，请介绍一下人工智能。", "什么是机器学习？", "什么是深度学习？",
                   "介绍一下Python", "写一首诗", "什么是AI？", "Hello", "What is machine learning?",
                   "Tell me about Python", "What is AI?"]
# (question paraphrases, answer variants); the first answer is the preferred one.
TOPICS: list[tuple[list[str], list[str]]] = [
    (["你好", "你好！", "您好", "你好呀", "嗨", "哈喽"],
     ["你好！我是一个小型演示语言模型，很高兴为你服务。", "你好！有什么可以帮你的吗？",
      "您好！我是演示模型，请问有什么问题？"]),
    (["你好，请介绍一下人工智能。", "请介绍一下人工智能。", "什么是人工智能？", "人工智能是什么？",
      "介绍一下人工智能", "能讲讲人工智能吗？"],
     ["人工智能是让计算机模拟人类智能的技术，包括学习、推理和理解语言等能力。",
      "人工智能（AI）研究如何让机器像人一样思考和学习，已广泛用于语音识别、翻译和推荐系统。",
      "人工智能是计算机科学的一个分支，目标是让机器完成需要人类智能的任务。"]),
    (["什么是AI？", "AI是什么？", "AI是什么意思？", "请解释一下AI。"],
     ["AI是人工智能的英文缩写，指让机器具备学习、推理和理解语言能力的技术。",
      "AI就是人工智能，它让计算机可以从数据中学习并完成复杂任务。"]),
    (["什么是机器学习？", "机器学习是什么？", "请介绍一下机器学习。", "介绍一下机器学习",
      "能解释一下机器学习吗？"],
     ["机器学习是人工智能的一个分支，让计算机从数据中自动学习规律，而不需要手写每一条规则。",
      "机器学习通过数据训练模型，让模型能够对新的数据做出预测。",
      "机器学习是一种让计算机从经验中学习的方法，常见类型有监督学习、无监督学习和强化学习。"]),
    (["什么是深度学习？", "深度学习是什么？", "请介绍一下深度学习。", "介绍一下深度学习"],
     ["深度学习是机器学习的一个分支，使用多层神经网络从大量数据中学习特征。",
      "深度学习用很多层的神经网络来学习复杂的模式，在图像识别和语言模型上效果很好。"]),
    (["介绍一下Python", "什么是Python？", "Python是什么？", "请介绍一下Python语言。",
      "Python是什么语言？"],
     ["Python是一种简单易学的编程语言，语法清晰，广泛用于数据分析、人工智能和网站开发。",
      "Python是一门流行的高级编程语言，拥有丰富的第三方库，适合初学者入门。",
      "Python由Guido van Rossum创建，以简洁的语法和强大的生态系统著称。"]),
    (["写一首诗", "请写一首诗。", "帮我写一首诗", "来一首诗吧", "写一首关于春天的诗"],
     ["春风吹绿柳，细雨润花开。\n日暮归鸟静，明月照窗来。",
      "山高云自在，水远月长明。\n一壶清茶里，半卷旧书声。",
      "窗外花千树，风中鸟一声。\n春光无限好，万物又新生。"]),
    (["你是谁？", "你是谁", "介绍一下你自己", "请做个自我介绍。", "你叫什么名字？"],
     ["我是gpt-service自带的小型演示语言模型，可以回答一些简单的问题。",
      "我是一个很小的演示模型，只学过少量的中文和英文问答。"]),
    (["什么是神经网络？", "神经网络是什么？", "介绍一下神经网络"],
     ["神经网络是一种受人脑启发的计算模型，由许多相互连接的神经元层组成。",
      "神经网络通过调整神经元之间的权重来学习输入和输出之间的关系。"]),
    (["什么是大语言模型？", "大语言模型是什么？", "什么是LLM？", "介绍一下大语言模型"],
     ["大语言模型（LLM）是在海量文本上训练的神经网络，能够理解和生成自然语言。",
      "大语言模型通过预测下一个词来学习语言，可以用于对话、写作和翻译。"]),
    (["什么是LoRA？", "LoRA是什么？", "介绍一下LoRA", "LoRA微调是什么？"],
     ["LoRA是一种高效的微调方法，只训练插入模型中的低秩矩阵，从而大大减少需要训练的参数。",
      "LoRA通过给权重加上低秩增量来微调大模型，训练快、显存占用小。"]),
    (["什么是微调？", "模型微调是什么意思？", "介绍一下微调"],
     ["微调是在预训练模型的基础上，用特定任务的数据继续训练，使模型适应新任务。",
      "微调就是用少量领域数据继续训练已有模型，让它更擅长某个任务。"]),
    (["什么是Transformer？", "Transformer是什么？", "介绍一下Transformer模型"],
     ["Transformer是一种基于注意力机制的神经网络结构，是现代大语言模型的基础。",
      "Transformer使用自注意力机制处理序列，可以并行计算，训练效率很高。"]),
    (["什么是自然语言处理？", "自然语言处理是什么？", "介绍一下NLP"],
     ["自然语言处理是让计算机理解和生成人类语言的技术，例如翻译、问答和摘要。",
      "自然语言处理（NLP）研究计算机如何处理文本和语音。"]),
    (["什么是计算机视觉？", "计算机视觉是什么？"],
     ["计算机视觉让计算机能够看懂图像和视频，例如识别人脸和物体。"]),
    (["什么是强化学习？", "强化学习是什么？"],
     ["强化学习是一种通过奖励和惩罚来学习决策的机器学习方法。",
      "在强化学习中，智能体通过与环境交互、获得奖励来学习最优策略。"]),
    (["今天天气怎么样？", "今天天气好吗？", "明天会下雨吗？", "天气如何？"],
     ["我无法获取实时天气信息，建议你查看天气预报应用。",
      "抱歉，我不能联网查询天气，出门前可以看看天气预报哦。"]),
    (["谢谢", "谢谢你！", "非常感谢", "多谢"],
     ["不客气！很高兴能帮到你。", "不用谢，有问题随时问我。", "不客气～"]),
    (["小猫怎么叫？", "猫是怎么叫的？", "猫咪会说什么？", "小猫会说什么？"],
     ["小猫喵喵叫：喵～喵～", "猫咪会发出“喵”的叫声，听起来像“喵～”。"]),
    (["小狗怎么叫？", "狗是怎么叫的？"], ["小狗汪汪叫：汪～汪～"]),
    (["再见", "拜拜", "再见！", "我要走了"],
     ["再见！祝你有美好的一天。", "拜拜，欢迎下次再来！"]),
    (["什么是编程？", "编程是什么？", "如何学习编程？", "怎么学编程？"],
     ["编程就是用编程语言编写指令，让计算机完成特定任务。建议从Python开始，多写多练。",
      "学习编程可以先掌握一门语言的基础语法，然后通过做小项目来练习。"]),
    (["什么是JavaScript？", "JavaScript是什么？", "介绍一下JavaScript"],
     ["JavaScript是网页开发的主要编程语言，可以让网页具有交互功能。"]),
    (["什么是数据库？", "数据库是什么？", "什么是SQL？"],
     ["数据库是有组织地存储和管理数据的系统，常用SQL语言来查询数据。"]),
    (["什么是算法？", "算法是什么？"],
     ["算法是解决问题的一系列明确步骤，例如排序算法和搜索算法。"]),
    (["什么是Linux？", "Linux是什么？"],
     ["Linux是一种开源的操作系统内核，广泛用于服务器和嵌入式设备。"]),
    (["什么是Git？", "Git是什么？", "Git有什么用？"],
     ["Git是一个分布式版本控制系统，用来记录代码的修改历史并支持多人协作。"]),
    (["什么是GPU？", "GPU是什么？"],
     ["GPU是图形处理器，擅长大规模并行计算，常用于训练深度学习模型。"]),
    (["什么是API？", "API是什么？"],
     ["API是应用程序编程接口，规定了不同软件之间如何互相调用。"]),
    (["什么是云计算？", "云计算是什么？"],
     ["云计算是通过网络按需使用计算、存储等资源的服务模式。"]),
    (["什么是分词器？", "tokenizer是什么？"],
     ["分词器把文本切分成词元（token），并把它们转换成模型能处理的数字编号。"]),
    (["圆周率是多少？", "π等于多少？"],
     ["圆周率π约等于3.14159，是圆的周长与直径之比。"]),
    (["什么是勾股定理？", "勾股定理是什么？"],
     ["勾股定理指直角三角形两条直角边的平方和等于斜边的平方，即a²+b²=c²。"]),
    (["太阳系有几颗行星？", "太阳系有多少颗行星？"],
     ["太阳系有八颗行星：水星、金星、地球、火星、木星、土星、天王星和海王星。"]),
    (["水的沸点是多少？", "水在多少度沸腾？"],
     ["在标准大气压下，水的沸点是100摄氏度。"]),
    (["讲个笑话", "给我讲个笑话吧", "说个笑话"],
     ["程序员最怕什么？怕代码没有bug，因为那说明测试还没写。",
      "为什么电脑很累？因为它的窗口（Windows）太多了。"]),
    (["如何保持健康？", "怎样保持身体健康？"],
     ["保持健康需要均衡饮食、规律作息和适量运动。"]),
    (["推荐一本书", "有什么好书推荐吗？"],
     ["推荐《三体》，这是一部精彩的科幻小说。", "可以读读《西游记》，它是中国古典名著之一。"]),
    (["Hello", "Hello!", "Hi", "Hi there", "Hey", "Good morning"],
     ["Hello! I am a tiny demo language model. How can I help you?",
      "Hi! Nice to meet you. What would you like to know?"]),
    (["What is machine learning?", "What's machine learning?", "Explain machine learning.",
      "Can you explain machine learning?"],
     ["Machine learning is a branch of AI where computers learn patterns from data "
      "instead of following hand-written rules.",
      "Machine learning trains models on data so that they can make predictions on new data."]),
    (["Tell me about Python", "What is Python?", "Tell me about Python.",
      "What is the Python language?"],
     ["Python is a popular, easy to learn programming language used for data science, "
      "AI and web development.",
      "Python is a high-level programming language known for its clean syntax and huge "
      "ecosystem of libraries."]),
    (["What is AI?", "What is artificial intelligence?", "Explain AI.", "Tell me about AI"],
     ["AI, or artificial intelligence, is technology that lets machines learn, reason "
      "and understand language.",
      "Artificial intelligence is the field of building computer systems that perform "
      "tasks that normally need human intelligence."]),
    (["What is deep learning?", "Explain deep learning."],
     ["Deep learning is a kind of machine learning that uses neural networks with many layers."]),
    (["Write a poem", "Write a poem.", "Please write a short poem."],
     ["The river runs beneath the moon,\nthe night is calm, the stars in tune.",
      "Soft rain on the window,\nwarm light on the page,\nquiet words growing."]),
    (["Who are you?", "What are you?", "Introduce yourself."],
     ["I am the tiny demo model bundled with gpt-service. I can answer a few simple questions."]),
    (["What is a large language model?", "What is an LLM?"],
     ["A large language model is a neural network trained on lots of text to understand "
      "and generate language."]),
    (["What is LoRA?", "Explain LoRA."],
     ["LoRA is an efficient fine-tuning method that trains small low-rank matrices "
      "instead of all model weights."]),
    (["What is fine-tuning?", "Explain fine-tuning."],
     ["Fine-tuning continues training a pretrained model on task-specific data."]),
    (["What is a neural network?", "Explain neural networks."],
     ["A neural network is a model made of layers of connected neurons that learn from data."]),
    (["What is a transformer model?", "What is a Transformer?"],
     ["A transformer is a neural network architecture based on self-attention; "
      "it powers modern language models."]),
    (["What's the weather like today?", "Will it rain tomorrow?", "How is the weather?"],
     ["I cannot access live weather data. Please check a weather app."]),
    (["What does a cat say?", "How does a cat sound?"],
     ["A cat says meow, or “喵” in Chinese."]),
    (["Thank you", "Thanks!", "Thanks a lot"],
     ["You're welcome! Happy to help.", "No problem, ask me anytime."]),
    (["Goodbye", "Bye", "See you later"], ["Goodbye! Have a nice day."]),
    (["Tell me a joke", "Tell me a joke."],
     ["Why do programmers prefer dark mode? Because light attracts bugs."]),
    (["What is Git?", "Explain Git."],
     ["Git is a distributed version control system for tracking changes in code."]),
    (["What is Linux?"], ["Linux is an open-source operating system kernel used on servers."]),
    (["What is a GPU?"], ["A GPU is a graphics processor that is great at parallel math, "
                          "so it is used to train neural networks."]),
    (["What is an API?"], ["An API is an interface that lets programs talk to each other."]),
    (["How do I learn programming?", "How can I learn to code?"],
     ["Start with a beginner-friendly language such as Python and build small projects."]),
]

CAPITALS = [("中国", "北京", "China", "Beijing"), ("日本", "东京", "Japan", "Tokyo"),
            ("法国", "巴黎", "France", "Paris"), ("英国", "伦敦", "the UK", "London"),
            ("美国", "华盛顿", "the USA", "Washington"), ("德国", "柏林", "Germany", "Berlin"),
            ("意大利", "罗马", "Italy", "Rome"), ("俄罗斯", "莫斯科", "Russia", "Moscow"),
            ("韩国", "首尔", "South Korea", "Seoul"), ("加拿大", "渥太华", "Canada", "Ottawa"),
            ("西班牙", "马德里", "Spain", "Madrid"), ("埃及", "开罗", "Egypt", "Cairo")]
WORDS = [("猫", "cat"), ("狗", "dog"), ("苹果", "apple"), ("水", "water"), ("书", "book"),
         ("太阳", "sun"), ("月亮", "moon"), ("电脑", "computer"), ("朋友", "friend"),
         ("学校", "school"), ("老师", "teacher"), ("花", "flower"), ("鱼", "fish"),
         ("天空", "sky"), ("音乐", "music"), ("咖啡", "coffee"), ("茶", "tea"), ("鸟", "bird")]

# Building blocks for short Chinese sentences (copy pretraining + the LoRA demo task).
SUBJECTS = ["我", "你", "他", "她", "我们", "他们", "小明", "小红", "老师", "妈妈", "爸爸", "小猫",
            "同学们", "爷爷"]
TIMES = ["今天", "明天", "昨天", "早上", "晚上", "周末", "下午", "现在", "每天", "中午"]
PREDICATES = ["去公园散步", "吃苹果", "学习Python", "看书", "写代码", "喝咖啡", "听音乐", "打篮球",
              "去学校", "做作业", "画画", "唱歌", "跑步", "睡觉", "喝茶", "去超市买菜", "看电影",
              "学英语", "做饭", "游泳", "写日记", "去图书馆", "弹钢琴", "打扫房间", "种花", "踢足球",
              "骑自行车", "爬山", "拍照片", "玩游戏", "学数学", "训练模型", "读新闻", "去上班",
              "很开心", "很忙", "有点累", "在家休息", "去旅行", "学习人工智能"]
COPY_PROMPTS_ZH = ["请重复：", "复述一下：", "跟我说一遍：", "请原样输出："]
COPY_PROMPTS_EN = ["Repeat: ", "Say it again: "]
# fmt: on


def all_sentences() -> list[str]:
    """Every subject+time+predicate sentence, in a fixed order."""
    return [s + t + p for s in SUBJECTS for t in TIMES for p in PREDICATES]


def _split_sentences(seed: int) -> tuple[list[str], list[str], list[str]]:
    sentences = all_sentences()
    random.Random(seed).shuffle(sentences)
    n_train, n_test = DEMO_TRAIN_ROWS, DEMO_TEST_ROWS
    demo_train = sentences[:n_train]
    demo_test = sentences[n_train : n_train + n_test]
    copy_pool = sentences[n_train + n_test : n_train + n_test + COPY_ROWS]
    return demo_train, demo_test, copy_pool


def _topic_pairs(rng: random.Random) -> list[QA]:
    pairs: list[QA] = []
    for questions, answers in TOPICS:
        for q in questions:  # every paraphrase gets the preferred answer (twice: it dominates)
            pairs += [QA(q, answers[0]), QA(q, answers[0])]
        for a in answers[1:]:  # each alternative answer goes with two random paraphrases
            pairs += [QA(q, a) for q in rng.sample(questions, min(2, len(questions)))]
    return pairs


def _template_pairs(rng: random.Random) -> list[QA]:
    pairs: list[QA] = []
    for zh, cap_zh, en, cap_en in CAPITALS:
        pairs += [
            QA(f"{zh}的首都是哪里？", f"{zh}的首都是{cap_zh}。"),
            QA(f"{zh}的首都是什么？", f"{zh}的首都是{cap_zh}。"),
            QA(f"What is the capital of {en}?", f"The capital of {en} is {cap_en}."),
        ]
    for zh, en in WORDS:
        pairs += [
            QA(f"“{zh}”用英文怎么说？", f"“{zh}”的英文是“{en}”。"),
            QA(f'How do you say "{en}" in Chinese?', f'"{en}" in Chinese is “{zh}”.'),
        ]
    for _ in range(120):
        a, b = rng.randint(0, 20), rng.randint(0, 20)
        if rng.random() < 0.5:
            pairs.append(QA(f"{a}加{b}等于几？", f"{a}加{b}等于{a + b}。"))
        else:
            pairs.append(QA(f"What is {a} plus {b}?", f"{a} plus {b} is {a + b}."))
    return pairs


def _copy_pairs(rng: random.Random, pool: list[str]) -> list[QA]:
    pairs = [QA(rng.choice(COPY_PROMPTS_ZH) + "\n" + s, s) for s in pool]
    english = [
        "hello world",
        "good morning",
        "I like Python",
        "the cat is sleeping",
        "machine learning is fun",
        "see you tomorrow",
        "open the door",
        "it is sunny",
    ]
    pairs += [QA(p + e, e) for p in COPY_PROMPTS_EN for e in english]
    return pairs


def build_corpus(seed: int = SEED) -> list[QA]:
    """All pretraining question/answer pairs, shuffled deterministically: the topics, templates
    and sentence copying (repeated: learned by heart) and the character tasks."""
    import demo_tasks  # imports QA from here

    rng = random.Random(seed)
    _, _, copy_pool = _split_sentences(seed)
    core = _topic_pairs(rng) + _template_pairs(rng) + _copy_pairs(rng, copy_pool)
    pairs = core * CORE_REPEATS
    tasks = demo_tasks.build_task_pairs(seed, TASK_PASSES, TASK_EXTRA)
    pairs += [QA(qa.question, qa.answer, single=True) for qa in tasks]
    rng.shuffle(pairs)
    check_held_out(pairs)
    return pairs


def check_held_out(pairs: list[QA]) -> None:
    """None of the LoRA demo tasks of ``demo_data/`` may be in the pretraining corpus."""
    held_out = [NOTE_INSTRUCTION, "便条", "喵！", TAG_INSTRUCTION, "#"]
    if any(m in qa.question or m in qa.answer for qa in pairs for m in held_out):
        raise RuntimeError("a held-out demo task leaked into the pretraining corpus")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data-out", type=Path, default=DEFAULT_DATA_DIR)
    parser.add_argument("--seed", type=int, default=SEED)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    pairs = build_corpus(args.seed)
    logger.info("corpus: %d question/answer pairs", len(pairs))
    import demo_lora_tasks

    demo_lora_tasks.write_demo_data(args.data_out, args.seed)


if __name__ == "__main__":
    main()
