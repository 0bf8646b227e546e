#!/usr/bin/env python3
"""Generate the bundled synthetic sample corpus ``data/sample/{train,dev}.jsonl``.

Every passage is composed here from sentence templates and slot-filler vocabularies written for the
project (no patient text). Spans are recorded while the pieces are concatenated, so offsets are exact by
construction: ``text[start:end] == span["text"]`` with ``end`` exclusive (Python code-point indices).

Labels are the six CCKS 2019 (Yidu-S4K) types: 疾病和诊断, 影像检查, 实验室检验, 手术, 药物, 解剖部位.
About 30% of each type's filler strings are held out of train, so dev contains entity strings that the
training split never shows.

Output, one JSON object a line (UTF-8, no BOM)::

    {"id":"sample-train-0001","text":"...","spans":[{"start":3,"end":7,"label":"药物","text":"奥沙利铂"}],
     "meta":{"section":"现病史"}}

Usage::

    python scripts/make_sample.py                      # writes data/sample/train.jsonl and dev.jsonl
    python scripts/make_sample.py --out-dir /tmp/s     # same bytes elsewhere (deterministic)
    python scripts/make_sample.py --stats              # also print mention counts per type (Markdown)

Pure standard library; deterministic for a given ``--seed`` (never iterates over sets).
"""
from __future__ import annotations

import argparse
import json
import random
import re
import sys
from pathlib import Path
from typing import Callable, Sequence

# ---------------------------------------------------------------------------------------------------
# Labels
# ---------------------------------------------------------------------------------------------------

DIS, IMG, LAB, OP, DRUG, ANAT = "疾病和诊断", "影像检查", "实验室检验", "手术", "药物", "解剖部位"
LABELS: tuple[str, ...] = (DIS, IMG, LAB, OP, DRUG, ANAT)
CODE: dict[str, str] = {"DIS": DIS, "IMG": IMG, "LAB": LAB, "OP": OP, "DRUG": DRUG, "ANAT": ANAT}

DEFAULT_SEED = 2019
DEFAULT_TRAIN = 150
DEFAULT_DEV = 40
HELDOUT_FRACTION = 0.3  # share of each type's filler strings never used in train
DEV_HELDOUT_P = 0.25  # in dev, chance of drawing a held-out filler when one fits the slot (~30% unseen)
MAX_LEN = 720  # hard cap on passage length (characters)
MIN_LEN = 80  # shorter compositions are redrawn
LONG_MIN = 513  # a 'long' passage must exceed a 512-token window even at one token per character

# ---------------------------------------------------------------------------------------------------
# Vocabularies. Profiles keep a passage clinically coherent (one organ system per passage).
# Keys: feat (template tags the profile supports), cav (body cavities, optional), site (tumour or lesion
# sites), ihc (immunohistochemistry lines, never annotated), sym (symptom phrases with fixed mentions),
# dis (main diagnoses), path (pathology diagnoses), other (related diagnoses), op (operations and
# procedures), anat (anatomy), node (lymph-node stations), drug (disease-specific drugs), lab, img.
# ---------------------------------------------------------------------------------------------------

PROFILES: dict[str, dict[str, tuple[str, ...]]] = {
    "colorectal": {
        "site": ("直肠", "乙状结肠", "升结肠", "横结肠", "降结肠", "回盲部", "直肠前壁", "结肠肝曲", "直肠上段", "结肠脾曲"),
        "ihc": ("CK20（+），CDX-2（+），Ki-67（约60%+）", "错配修复蛋白MLH1、MSH2、MSH6、PMS2均（+）",
                "CK7（-），SATB2（+），Ki-67约70%"),
        "sym": ("大便带血，次数增多", "排便习惯改变", "[肛门|ANAT]坠胀感", "[下腹部|ANAT]隐痛", "大便变细伴里急后重", "[腹|ANAT]胀、停止排气排便"),
        "feat": ("chemo", "surg", "onc", "gi"),
        "dis": ("直肠癌", "乙状结肠癌", "结肠癌", "升结肠癌", "降结肠癌", "横结肠癌", "结肠肝曲癌",
                "直肠中分化腺癌", "回盲部癌"),
        "path": ("直肠腺癌（中度分化），溃疡型", "结肠黏液腺癌", "乙状结肠管状腺癌II级", "直肠中低分化腺癌",
                 "升结肠腺癌（高-中分化）", "结肠印戒细胞癌", "直肠溃疡型中分化腺癌"),
        "other": ("结肠多发息肉", "不全性肠梗阻", "肝转移瘤", "混合痔", "直肠绒毛状腺瘤", "粘连性肠梗阻",
                  "吻合口瘘"),
        "op": ("直肠癌根治术（Dixon术）", "腹腔镜下直肠癌根治术", "腹腔镜下乙状结肠癌根治术", "根治性右半结肠切除术",
               "左半结肠切除术", "经腹会阴联合直肠癌根治术（Miles术）", "腹腔镜辅助下右半结肠切除术",
               "横结肠癌根治术", "回肠造口还纳术", "Hartmann术"),
        "anat": ("直肠", "乙状结肠", "升结肠", "横结肠", "降结肠", "回盲部", "直肠前壁", "结肠肝曲",
                 "直肠上段", "结肠脾曲"),
        "node": ("肠周淋巴结", "肠系膜淋巴结", "中央组淋巴结", "中间组淋巴结", "肠系膜根部淋巴结"),
        "drug": ("奥沙利铂", "卡培他滨", "亚叶酸钙", "氟尿嘧啶", "伊立替康", "贝伐珠单抗", "西妥昔单抗",
                 "雷替曲塞", "希罗达", "5-FU", "替加氟", "乐沙定"),
        "lab": ("CEA", "CA199", "CA242", "大便隐血"),
        "img": ("全腹部增强CT", "盆腔MRI", "腹部CT", "直肠MRI", "PET-CT", "下腹部CT", "腹盆腔增强CT"),
    },
    "gastric": {
        "site": ("胃窦", "胃体", "胃底", "贲门", "胃小弯", "胃大弯", "胃角"),
        "ihc": ("HER-2（1+），Ki-67（约70%+），CK（+）", "HER-2（3+），EBER（-），Ki-67约50%"),
        "sym": ("[上腹部|ANAT]隐痛不适", "[剑突下|ANAT]烧灼感", "反酸、嗳气", "黑便", "进食后饱胀、呕吐", "食欲下降伴消瘦"),
        "feat": ("chemo", "surg", "onc", "gi"),
        "dis": ("胃癌", "胃窦癌", "贲门癌", "胃体癌", "胃角癌", "残胃癌", "胃恶性肿瘤", "胃底贲门癌"),
        "path": ("胃窦低分化腺癌", "胃体小弯侧中分化腺癌，溃疡型", "贲门腺癌（中-低分化）", "胃印戒细胞癌",
                 "胃底黏液腺癌", "胃角低分化腺癌伴印戒细胞癌"),
        "other": ("慢性萎缩性胃炎", "胃溃疡", "幽门梗阻", "十二指肠球部溃疡", "上消化道出血", "胃息肉",
                  "反流性食管炎", "倾倒综合征"),
        "op": ("胃癌根治术", "腹腔镜下根治性远端胃大部切除术", "根治性全胃切除术", "贲门癌根治术", "胃空肠吻合术",
               "腹腔镜辅助下全胃切除术+D2淋巴结清扫术", "内镜下黏膜剥离术", "近端胃切除术", "远端胃癌根治术（毕II式吻合）"),
        "anat": ("胃窦", "胃体", "胃底", "贲门", "幽门", "胃小弯", "胃大弯", "十二指肠", "胃壁", "胃角",
                 "大网膜"),
        "node": ("小弯侧淋巴结", "幽门下淋巴结", "大弯侧淋巴结", "幽门上淋巴结", "第7组淋巴结", "贲门右淋巴结"),
        "drug": ("替吉奥", "奥沙利铂", "多西他赛", "紫杉醇", "顺铂", "卡培他滨", "表柔比星", "阿帕替尼",
                 "S-1", "艾素"),
        "lab": ("CA724", "CEA", "CA199", "胃泌素17", "幽门螺杆菌"),
        "img": ("上腹部增强CT", "胸腹部CT", "上消化道造影", "腹部彩超", "PET/CT", "上腹部CT平扫+增强"),
    },
    "lung": {
        "cav": ("胸腔", "纵隔"),
        "site": ("右肺上叶", "左肺下叶", "右肺中叶", "左肺上叶舌段", "右肺下叶背段", "右主支气管"),
        "ihc": ("TTF-1（+），NapsinA（+），P40（-），Ki-67约30%", "CD56（+），Syn（+），CgA（+），Ki-67约90%",
                "P40（+），CK5/6（+），TTF-1（-）"),
        "sym": ("咳嗽、咳痰，痰中带血", "[胸|ANAT]闷、气促", "刺激性干咳", "[胸|ANAT]痛", "声音嘶哑", "活动后气促"),
        "feat": ("chemo", "surg", "onc", "chest"),
        "dis": ("肺癌", "右肺上叶腺癌", "左肺下叶鳞癌", "小细胞肺癌", "右肺中心型肺癌", "非小细胞肺癌",
                "肺恶性肿瘤", "左肺腺癌"),
        "path": ("浸润性腺癌（腺泡为主型）", "中分化鳞状细胞癌", "小细胞癌", "微浸润性腺癌", "肺黏液腺癌"),
        "other": ("肺部感染", "慢性阻塞性肺疾病", "肺气肿", "右侧胸腔积液", "阻塞性肺炎", "支气管扩张",
                  "陈旧性肺结核", "Ⅱ型呼吸衰竭", "肺大疱", "脑转移瘤"),
        "op": ("胸腔镜下右肺上叶切除术", "左肺下叶切除+纵隔淋巴结清扫术", "胸腔闭式引流术", "胸腔镜下肺楔形切除术",
               "胸腔穿刺置管术", "CT引导下经皮肺穿刺活检术", "右肺中下叶切除术", "VATS左肺上叶切除术"),
        "anat": ("右肺上叶", "左肺下叶", "右肺中叶", "左肺上叶舌段", "纵隔", "肺门", "胸膜", "右主支气管",
                 "气管", "胸壁", "右肺下叶背段"),
        "node": ("隆突下淋巴结", "肺门淋巴结", "第4组淋巴结", "锁骨上淋巴结", "第10组淋巴结"),
        "drug": ("培美曲塞", "顺铂", "卡铂", "吉非替尼", "埃克替尼", "奥希替尼", "吉西他滨", "依托泊苷",
                 "多西他赛", "帕博利珠单抗", "安罗替尼", "长春瑞滨"),
        "lab": ("CYFRA21-1", "NSE", "SaO2", "PO2", "PCO2", "SCC", "痰培养", "ProGRP"),
        "img": ("胸部CT", "胸片", "胸部增强CT", "PET-CT", "头颅MRI", "全身骨扫描", "胸部X线", "胸部CT平扫"),
    },
    "hepatobiliary": {
        "site": ("肝右叶", "肝左叶", "肝S6段", "胆囊", "胆总管", "胰头", "胰体尾", "十二指肠乳头"),
        "ihc": ("Hepatocyte（+），GPC-3（+），CK19（-）", "CK7（+），CK19（+），MUC1（+）"),
        "sym": ("[右上腹|ANAT]胀痛", "[皮肤|ANAT]、[巩膜|ANAT]黄染", "[肝区|ANAT]隐痛", "纳差、乏力", "[腰背部|ANAT]疼痛"),
        "feat": ("chemo", "surg", "onc", "gi"),
        "dis": ("原发性肝癌", "肝细胞癌", "胰头癌", "胆管癌", "肝内胆管细胞癌", "壶腹周围癌", "胆囊癌",
                "胰腺癌"),
        "path": ("肝细胞癌（中分化）", "胰腺导管腺癌", "胆囊中分化腺癌", "十二指肠乳头中分化腺癌", "肝内胆管细胞癌（低分化）"),
        "other": ("乙型病毒性肝炎", "肝硬化", "肝囊肿", "胆总管结石", "脾大", "门静脉高压", "梗阻性黄疸",
                  "食管胃底静脉曲张", "胆囊结石伴慢性胆囊炎", "急性胰腺炎"),
        "op": ("腹腔镜下胆囊切除术", "肝动脉化疗栓塞术", "胰十二指肠切除术", "右半肝切除术", "肝癌射频消融术",
               "经皮经肝胆道引流术", "胆总管切开取石T管引流术", "ERCP+EST取石术", "肝部分切除术", "脾切除术",
               "TACE术"),
        "anat": ("肝", "肝右叶", "肝左叶", "肝S6段", "胆囊", "胆总管", "胰头", "胰体尾", "门静脉", "肝门",
                 "肝内胆管", "十二指肠乳头", "脾"),
        "node": ("肝门淋巴结", "胰周淋巴结", "肝十二指肠韧带淋巴结", "腹主动脉旁淋巴结"),
        "drug": ("多烯磷脂酰胆碱", "还原型谷胱甘肽", "恩替卡韦", "索拉非尼", "仑伐替尼", "熊去氧胆酸",
                 "异甘草酸镁", "吉西他滨", "白蛋白结合型紫杉醇", "奥曲肽", "乌司他丁", "丁二磺酸腺苷蛋氨酸",
                 "表柔比星", "碘化油"),
        "lab": ("总胆红素", "直接胆红素", "谷丙转氨酶", "谷草转氨酶", "AFP", "白蛋白", "HBV-DNA", "血淀粉酶",
                "脂肪酶", "γ-谷氨酰转移酶", "碱性磷酸酶", "凝血酶原时间", "乙肝表面抗原"),
        "img": ("上腹部MRI", "MRCP", "腹部彩超", "上腹部增强CT", "肝胆胰脾彩超", "DSA", "肝脏超声造影"),
    },
    "breast": {
        "cav": ("腋窝", "胸壁皮瓣下"),
        "site": ("左乳外上象限", "右乳", "左乳", "右乳内下象限", "左乳内上象限", "乳晕"),
        "ihc": ("ER（90%强+），PR（30%中+），HER-2（2+），Ki-67（20%+）", "ER（-），PR（-），HER-2（0），Ki-67（60%+）",
                "ER（约80%，强+），PR（-），HER-2（3+）"),
        "sym": ("[左乳|ANAT]无痛性肿块", "[右乳|ANAT]肿物", "[乳头|ANAT]溢液", "[腋窝|ANAT]肿物"),
        "feat": ("chemo", "surg", "onc", "breast", "palp"),
        "dis": ("乳腺癌", "左乳浸润性导管癌", "右乳腺癌", "三阴性乳腺癌", "左乳恶性肿瘤", "右乳浸润性小叶癌"),
        "path": ("浸润性导管癌II级", "导管原位癌", "浸润性小叶癌", "浸润性导管癌III级伴导管内癌", "黏液癌"),
        "other": ("乳腺纤维腺瘤", "乳腺增生", "骨转移瘤", "乳腺导管内乳头状瘤", "上肢淋巴水肿"),
        "op": ("左乳腺癌改良根治术", "右乳肿物切除术", "前哨淋巴结活检术", "左乳保乳手术", "乳腺肿物微创旋切术",
               "右乳单纯切除术+腋窝淋巴结清扫术", "输液港植入术", "乳腺癌改良根治术"),
        "anat": ("左乳外上象限", "右乳", "左乳", "腋窝", "乳头", "胸大肌", "右乳内下象限", "乳晕",
                 "左乳内上象限", "右侧胸壁"),
        "node": ("腋窝淋巴结", "前哨淋巴结", "腋尖淋巴结", "内乳淋巴结"),
        "drug": ("表柔比星", "环磷酰胺", "多西他赛", "曲妥珠单抗", "帕妥珠单抗", "他莫昔芬", "来曲唑",
                 "阿那曲唑", "戈舍瑞林", "吡柔比星", "白蛋白紫杉醇", "依西美坦"),
        "lab": ("CA153", "CEA", "雌二醇", "CA125"),
        "img": ("乳腺彩超", "钼靶", "乳腺MRI", "乳腺X线摄影", "全身骨ECT", "胸部CT"),
    },
    "gyne": {
        "cav": ("盆腔", "阴道残端", "子宫直肠陷凹"),
        "site": ("子宫", "宫颈", "左侧卵巢", "宫腔", "子宫内膜", "右侧附件区"),
        "ihc": ("P16（+），P53（野生型），Ki-67约50%", "WT-1（+），PAX-8（+），P53（突变型）", "ER（+），PR（+），PTEN（-）"),
        "sym": ("[阴道|ANAT]不规则流血", "接触性出血", "[下腹|ANAT]坠胀", "月经量增多", "绝经后[阴道|ANAT]流血", "[腹|ANAT]胀伴[腹|ANAT]围增大"),
        "feat": ("chemo", "surg", "onc", "gyne"),
        "dis": ("宫颈癌", "卵巢癌", "子宫内膜癌", "宫颈鳞状细胞癌", "卵巢浆液性囊腺癌", "宫颈癌IIA期",
                "输卵管癌"),
        "path": ("宫颈鳞状细胞癌（非角化型）", "高级别浆液性癌", "子宫内膜样腺癌I级", "宫颈腺癌", "卵巢透明细胞癌"),
        "other": ("子宫肌瘤", "慢性宫颈炎", "卵巢囊肿", "宫颈上皮内瘤变III级", "子宫内膜息肉", "子宫腺肌病",
                  "盆腔积液"),
        "op": ("广泛性全子宫切除术+盆腔淋巴结清扫术", "腹腔镜下全子宫切除术", "卵巢癌肿瘤细胞减灭术", "宫颈锥切术",
               "子宫肌瘤剔除术", "双侧附件切除术", "宫腔镜下子宫内膜息肉电切术", "诊断性刮宫术",
               "经腹全子宫+双附件切除术"),
        "anat": ("子宫", "宫颈", "双侧附件", "盆腔", "阴道", "左侧卵巢", "宫腔", "子宫内膜", "阴道穹窿",
                 "右侧附件区", "子宫直肠陷凹"),
        "node": ("盆腔淋巴结", "髂外淋巴结", "闭孔淋巴结", "腹主动脉旁淋巴结"),
        "drug": ("紫杉醇", "卡铂", "顺铂", "奈达铂", "多柔比星脂质体", "贝伐珠单抗", "奥拉帕利", "米非司酮",
                 "异环磷酰胺"),
        "lab": ("CA125", "HE4", "HCG", "SCC", "宫颈TCT", "HPV"),
        "img": ("盆腔MRI", "妇科B超", "经阴道彩超", "盆腔增强CT", "PET-CT"),
    },
    "esophageal": {
        "cav": ("胸腔", "纵隔", "腹腔"),
        "site": ("食管中段", "食管下段", "胸段食管", "食管胃结合部"),
        "ihc": ("P40（+），CK5/6（+），Ki-67约40%", "P63（+），CK5/6（+），P53（+）"),
        "sym": ("进行性吞咽困难", "进食哽噎感", "[胸骨|ANAT]后疼痛", "声音嘶哑"),
        "feat": ("chemo", "surg", "onc", "chest"),
        "dis": ("食管癌", "食管中段鳞癌", "食管胃结合部腺癌", "食管下段癌", "食管恶性肿瘤"),
        "path": ("食管中分化鳞状细胞癌", "食管基底细胞样鳞状细胞癌", "高级别上皮内瘤变伴局部癌变"),
        "other": ("吻合口狭窄", "食管裂孔疝", "放射性食管炎", "反流性食管炎"),
        "op": ("食管癌根治术", "胸腹腔镜联合食管癌根治术", "食管癌切除+食管胃弓上吻合术", "食管支架置入术",
               "空肠造瘘术", "Ivor-Lewis食管癌切除术"),
        "anat": ("食管", "食管中段", "食管下段", "胸段食管", "贲门", "吻合口", "食管胃结合部"),
        "node": ("喉返神经旁淋巴结", "隆突下淋巴结", "胃左动脉旁淋巴结", "食管旁淋巴结"),
        "drug": ("紫杉醇", "顺铂", "奈达铂", "氟尿嘧啶", "卡瑞利珠单抗", "多西他赛", "替吉奥"),
        "lab": ("SCC", "CEA", "CYFRA21-1"),
        "img": ("食管钡餐", "胸部增强CT", "上消化道造影", "PET-CT", "颈胸腹部CT"),
    },
    "thyroid": {
        "cav": ("甲状腺床", "颈前肌群下"),
        "site": ("甲状腺左叶", "甲状腺右叶", "甲状腺峡部"),
        "ihc": ("TG（+），TTF-1（+），BRAF V600E（+），Galectin-3（+）", "CK19（+），HBME-1（+），Ki-67约5%"),
        "sym": ("无痛性[颈部|ANAT]包块", "[颈前区|ANAT]肿物", "声音嘶哑", "[心|ANAT]悸、多汗"),
        "feat": ("surg", "onc", "thyroid", "palp"),
        "dis": ("甲状腺乳头状癌", "结节性甲状腺肿", "甲状腺腺瘤", "甲状腺微小乳头状癌", "甲状腺滤泡性肿瘤"),
        "path": ("甲状腺乳头状癌（经典型）", "结节性甲状腺肿伴腺瘤样增生", "甲状腺滤泡性腺瘤"),
        "other": ("桥本甲状腺炎", "甲状腺功能亢进症", "甲状腺功能减退症", "低钙血症"),
        "op": ("甲状腺全切术+中央区淋巴结清扫术", "甲状腺右叶切除术", "甲状腺次全切除术", "颈部淋巴结清扫术",
               "甲状腺左叶及峡部切除术"),
        "anat": ("甲状腺左叶", "甲状腺右叶", "甲状腺峡部", "颈部", "气管", "喉返神经", "甲状旁腺"),
        "node": ("颈部淋巴结", "中央区淋巴结", "颈侧区淋巴结", "VI区淋巴结"),
        "drug": ("左甲状腺素钠", "甲巯咪唑", "丙硫氧嘧啶", "碘131", "骨化三醇", "碳酸钙D3"),
        "lab": ("TSH", "FT3", "FT4", "甲状腺球蛋白", "TPOAb", "降钙素", "甲状旁腺激素", "血钙"),
        "img": ("甲状腺彩超", "颈部CT", "颈部增强CT", "甲状腺ECT"),
    },
    "heme": {
        "site": ("颈部淋巴结", "腹股沟淋巴结", "脾", "颌下淋巴结", "纵隔淋巴结"),
        "ihc": ("CD20（+），CD3（-），Bcl-2（+），Ki-67约80%", "CD30（+），CD15（+），PAX-5弱（+）",
                "CD138（+），CD38（+），Kappa轻链限制性表达"),
        "sym": ("反复发热", "[颈部|ANAT]无痛性包块", "乏力、面色苍白", "[皮肤|ANAT]瘀斑", "[腰|ANAT]痛、乏力", "牙龈出血"),
        "feat": ("chemo", "onc", "heme", "palp"),
        "dis": ("弥漫大B细胞淋巴瘤", "急性髓系白血病", "多发性骨髓瘤", "霍奇金淋巴瘤", "骨髓增生异常综合征",
                "慢性粒细胞白血病", "滤泡性淋巴瘤"),
        "path": ("弥漫大B细胞淋巴瘤（非生发中心型）", "经典型霍奇金淋巴瘤（结节硬化型）", "浆细胞骨髓瘤"),
        "other": ("骨髓抑制", "粒细胞缺乏伴发热", "血小板减少症", "带状疱疹", "肿瘤溶解综合征", "缺铁性贫血"),
        "op": ("骨髓穿刺术", "颈部淋巴结切除活检术", "腰椎穿刺术", "PICC置管术", "骨髓活检术"),
        "anat": ("颈部淋巴结", "骨髓", "腹股沟淋巴结", "脾", "颌下淋巴结", "髂后上棘", "纵隔淋巴结"),
        "node": ("颈部淋巴结", "腋窝淋巴结", "腹膜后淋巴结"),
        "drug": ("利妥昔单抗", "环磷酰胺", "长春新碱", "阿糖胞苷", "伊达比星", "硼替佐米", "来那度胺",
                 "泼尼松", "伊马替尼", "甲氨蝶呤", "多柔比星"),
        "lab": ("LDH", "β2微球蛋白", "网织红细胞", "血清铁蛋白", "骨髓涂片", "免疫固定电泳",
                "外周血涂片"),
        "img": ("PET-CT", "颈胸腹部CT", "腹部彩超", "浅表淋巴结彩超"),
    },
    "cardio": {
        "site": ("前降支近段", "右冠状动脉", "回旋支", "左心室"),
        "ihc": (),
        "sym": ("[胸|ANAT]闷、气促", "[心|ANAT]悸", "[心前区|ANAT]压榨样疼痛", "[双下肢|ANAT]水肿", "[头|ANAT]晕、乏力", "夜间阵发性呼吸困难"),
        "feat": ("cardio",),
        "dis": ("冠心病", "高血压病", "2型糖尿病", "心房颤动", "慢性心力衰竭", "冠状动脉粥样硬化性心脏病",
                "急性非ST段抬高型心肌梗死", "不稳定型心绞痛", "脑梗死", "高血压3级（极高危）"),
        "path": (),
        "other": ("高脂血症", "糖尿病肾病", "糖尿病周围神经病变", "颈动脉斑块", "心功能III级", "频发室性早搏",
                  "高尿酸血症", "陈旧性脑梗死", "腔隙性脑梗死"),
        "op": ("经皮冠状动脉介入治疗", "冠状动脉支架植入术", "冠状动脉旁路移植术", "射频消融术",
               "永久起搏器植入术", "冠状动脉造影术", "PCI术"),
        "anat": ("左心室", "左心房", "冠状动脉", "前降支", "右冠状动脉", "回旋支", "颈动脉", "主动脉瓣",
                 "二尖瓣", "前降支近段"),
        "node": (),
        "drug": ("阿司匹林", "氯吡格雷", "替格瑞洛", "阿托伐他汀", "瑞舒伐他汀", "美托洛尔", "硝苯地平控释片",
                 "氨氯地平", "缬沙坦", "二甲双胍", "阿卡波糖", "门冬胰岛素", "甘精胰岛素", "螺内酯",
                 "低分子肝素", "华法林", "单硝酸异山梨酯", "地高辛", "沙库巴曲缬沙坦"),
        "lab": ("肌钙蛋白I", "BNP", "NT-proBNP", "糖化血红蛋白", "空腹血糖", "低密度脂蛋白胆固醇", "甘油三酯",
                "总胆固醇", "肌酸激酶同工酶", "D-二聚体", "餐后2小时血糖", "尿微量白蛋白"),
        "img": ("心电图", "心脏彩超", "冠脉造影", "动态心电图", "头颅CT", "颈动脉彩超", "冠脉CTA", "头颅MRI"),
    },
    "renal": {
        "cav": ("膀胱", "肾周", "腹膜后", "盆腔"),
        "site": ("左肾", "右肾", "膀胱三角区", "前列腺", "肾盂", "右侧输尿管", "肾上极"),
        "ihc": ("CK7（+），GATA3（+），Ki-67约40%", "CAIX（+），CD10（+），PAX-8（+）"),
        "sym": ("尿频、尿急，排尿困难", "肉眼血尿", "[双下肢|ANAT]水肿", "[腰|ANAT]部酸痛", "泡沫尿", "恶心、纳差"),
        "feat": ("renal", "surg"),
        "dis": ("慢性肾功能不全", "慢性肾脏病5期", "前列腺增生", "膀胱癌", "肾透明细胞癌", "左肾结石",
                "右输尿管结石", "IgA肾病", "糖尿病肾病"),
        "path": ("高级别浸润性尿路上皮癌", "肾透明细胞癌（Fuhrman II级）", "前列腺良性增生"),
        "other": ("肾性贫血", "肾积水", "继发性甲状旁腺功能亢进", "高钾血症", "代谢性酸中毒", "肾囊肿",
                  "尿路感染"),
        "op": ("经尿道前列腺电切术", "腹腔镜下根治性肾切除术", "经尿道膀胱肿瘤电切术", "输尿管软镜碎石术",
               "左前臂动静脉内瘘成形术", "经皮肾镜取石术", "腹膜透析置管术", "双J管置入术"),
        "anat": ("左肾", "右肾", "双肾", "右侧输尿管", "膀胱", "前列腺", "肾盂", "膀胱三角区", "尿道",
                 "肾上极"),
        "node": ("肾门淋巴结", "腹膜后淋巴结"),
        "drug": ("促红细胞生成素", "碳酸氢钠", "非那雄胺", "坦索罗辛", "吡柔比星", "骨化三醇", "碳酸镧",
                 "蔗糖铁", "左氧氟沙星", "复方α-酮酸"),
        "lab": ("肌酐", "尿素氮", "尿酸", "尿潜血", "PSA", "血钾", "eGFR", "尿蛋白", "甲状旁腺激素",
                "24小时尿蛋白定量", "尿培养"),
        "img": ("泌尿系彩超", "CTU", "KUB", "泌尿系CT", "双肾彩超", "前列腺MRI"),
    },
}

# Chronic oral drugs with a usual dose (药物).
CHRONIC_DOSE: dict[str, str] = {
    "硝苯地平控释片": "30mg qd", "氨氯地平": "5mg qd", "厄贝沙坦": "150mg qd", "缬沙坦": "80mg qd",
    "美托洛尔": "23.75mg qd", "二甲双胍": "0.5g tid", "格列美脲": "2mg qd", "阿卡波糖": "50mg tid",
    "甘精胰岛素": "12U qn", "阿司匹林": "100mg qd", "阿托伐他汀": "20mg qn", "别嘌醇": "0.1g bid",
    "非布司他": "40mg qd", "左甲状腺素钠": "50μg qd", "恩替卡韦": "0.5mg qd", "替米沙坦": "80mg qd",
    "吲达帕胺": "2.5mg qd", "格列齐特缓释片": "60mg qd", "瑞格列奈": "1mg tid",
}

GENERAL: dict[str, tuple[str, ...]] = {
    # comorbidities and past history (疾病和诊断)
    "co": ("高血压病", "2型糖尿病", "冠心病", "慢性支气管炎", "脂肪肝", "低蛋白血症", "贫血", "电解质紊乱",
           "低钾血症", "脑梗死", "胆囊结石", "前列腺增生", "痛风", "骨质疏松症", "腰椎间盘突出症", "慢性浅表性胃炎",
           "甲状腺结节", "乙型病毒性肝炎", "高脂血症", "阑尾炎", "肺部感染", "房颤", "高血压2级", "支气管哮喘",
           "慢性乙型肝炎", "子宫肌瘤", "肾结石"),
    # treatment toxicities (疾病和诊断)
    "tox": ("骨髓抑制", "II度骨髓抑制", "III度骨髓抑制", "周围神经毒性", "药物性肝损伤", "手足综合征",
            "粒细胞缺乏症", "放射性肺炎", "化疗后骨髓抑制"),
    # past operations (手术)
    # general anatomy (解剖部位)
    "anat": ("腹部", "颈部", "锁骨上", "腰背部", "头颅", "胸廓", "四肢", "脊柱", "口唇", "咽部", "心前区", "肾区",
             "肋脊角", "双侧颈部", "右侧胸腔"),
    # abdominal regions (解剖部位)
    "abd": ("右上腹", "左下腹", "右下腹", "剑突下", "脐周", "上腹部", "下腹部", "左上腹", "中下腹", "全腹",
            "右侧腹", "麦氏点"),
    # body cavities (解剖部位)
    "cavity": ("腹腔", "盆腔", "胸腔", "腹膜后", "小网膜囊", "膈下", "肝肾隐窝"),
    # nodal regions (解剖部位)
    "region": ("腹膜后", "纵隔", "双侧腋窝", "双侧腹股沟区", "锁骨上区", "肠系膜根部", "颈部"),
    # lab tests with a value (实验室检验)
    "lab": ("白细胞", "中性粒细胞百分比", "血红蛋白", "血小板", "红细胞", "血钾", "血钠", "血氯", "白蛋白",
            "总蛋白", "肌酐", "尿素氮", "谷丙转氨酶", "谷草转氨酶", "总胆红素", "血糖", "C反应蛋白", "降钙素原",
            "血沉", "乳酸脱氢酶", "WBC", "HGB", "PLT", "ALT", "AST", "Cr", "NEUT%", "淋巴细胞计数",
            "凝血酶原时间", "纤维蛋白原", "D-二聚体", "血红蛋白浓度", "中性粒细胞计数", "尿酸", "K", "Na",
            "前白蛋白", "血清钙"),
    # lab panels named without a value (实验室检验)
    "panel": ("血常规", "肝功能", "肾功能", "电解质", "凝血功能", "尿常规", "大便常规", "血脂", "心肌酶谱",
              "血型", "生化全套", "肿瘤标志物", "甲状腺功能", "血气分析", "输血前四项"),
    # imaging (影像检查)
    "img": ("CT", "B超", "彩超", "MRI", "胸片", "PET-CT", "腹部CT", "胸部CT", "心电图", "ECT", "全身骨扫描",
            "腹部彩超", "X线片", "胸腹盆CT", "腹部平片", "MR", "头颅CT", "胸部正侧位片", "全腹CT平扫+增强"),
    # supportive drugs (药物)
    "abx": ("头孢哌酮舒巴坦", "头孢呋辛", "头孢曲松", "左氧氟沙星", "莫西沙星", "哌拉西林他唑巴坦", "美罗培南",
            "头孢他啶", "奥硝唑", "亚胺培南西司他丁", "青霉素", "头孢唑林"),
    "ppi": ("奥美拉唑", "泮托拉唑", "兰索拉唑", "艾司奥美拉唑", "雷贝拉唑"),
    "emesis": ("昂丹司琼", "托烷司琼", "帕洛诺司琼", "甲氧氯普胺", "格拉司琼"),
    "gcsf": ("重组人粒细胞刺激因子", "升白胶囊", "地榆升白片", "聚乙二醇化重组人粒细胞刺激因子"),
    "otc": ("布洛芬", "多潘立酮", "蒙脱石散", "阿莫西林", "头孢克肟", "复方甘草片", "铝碳酸镁"),
    "sup": ("地塞米松", "甲泼尼龙", "甲地孕酮", "氯化钾", "人血白蛋白", "甘露醇", "吗啡", "羟考酮缓释片",
            "氨溴索", "胸腺法新", "复方氨基酸", "脂肪乳", "乳果糖", "维生素K1", "氨甲环酸", "多烯磷脂酰胆碱"),
    # chronic oral drugs (药物)
    "chronic": tuple(sorted(CHRONIC_DOSE)),
}

GENERAL_LABEL: dict[str, str] = {
    "co": DIS, "tox": DIS, "anat": ANAT, "abd": ANAT, "cavity": ANAT, "region": ANAT, "lab": LAB, "panel": LAB,
    "img": IMG, "abx": DRUG, "ppi": DRUG, "emesis": DRUG, "gcsf": DRUG, "otc": DRUG, "sup": DRUG, "chronic": DRUG,
}

# Past history: (diagnosis, operation) pairs, so "因“急性阑尾炎”行阑尾切除术" stays coherent.
PAST_PAIRS: tuple[tuple[str, str], ...] = (
    ("急性阑尾炎", "阑尾切除术"), ("胆囊结石", "腹腔镜下胆囊切除术"), ("右侧腹股沟斜疝", "腹股沟疝修补术"),
    ("老年性白内障", "白内障超声乳化吸除术"), ("混合痔", "痔切除术"), ("右股骨颈骨折", "右股骨颈骨折内固定术"),
    ("慢性扁桃体炎", "扁桃体切除术"), ("左膝骨关节炎", "左膝关节置换术"), ("子宫肌瘤", "子宫肌瘤剔除术"),
    ("结节性甲状腺肿", "甲状腺次全切除术"), ("足月妊娠", "剖宫产术"), ("腰椎间盘突出症", "腰椎间盘髓核摘除术"),
    ("急性化脓性阑尾炎", "腹腔镜下阑尾切除术"), ("胃穿孔", "胃穿孔修补术"), ("左肾结石", "体外冲击波碎石术"),
)

# Lab panels and the tests reported under them.
PANEL_MEMBERS: dict[str, tuple[str, ...]] = {
    "血常规": ("白细胞", "中性粒细胞百分比", "血红蛋白", "血小板", "红细胞", "WBC", "HGB", "PLT", "NEUT%",
             "淋巴细胞计数", "中性粒细胞计数", "血红蛋白浓度"),
    "肝功能": ("谷丙转氨酶", "谷草转氨酶", "ALT", "AST", "总胆红素", "直接胆红素", "白蛋白", "总蛋白", "前白蛋白",
             "γ-谷氨酰转移酶", "碱性磷酸酶"),
    "肾功能": ("肌酐", "尿素氮", "尿酸", "Cr", "eGFR"),
    "电解质": ("血钾", "血钠", "血氯", "K", "Na", "血清钙", "血钙"),
    "凝血功能": ("凝血酶原时间", "纤维蛋白原", "D-二聚体"),
    "血脂": ("总胆固醇", "甘油三酯", "低密度脂蛋白胆固醇"),
    "心肌酶谱": ("肌酸激酶同工酶", "乳酸脱氢酶", "LDH", "肌钙蛋白I"),
    "肿瘤标志物": ("CEA", "CA199", "CA125", "AFP", "CA724", "CA153", "SCC", "CYFRA21-1", "NSE"),
    "甲状腺功能": ("TSH", "FT3", "FT4"),
    "血气分析": ("PO2", "PCO2", "SaO2"),
    "生化全套": ("血糖", "肌酐", "谷丙转氨酶", "白蛋白", "血钾", "尿酸", "总胆红素"),
}

# Lab tests: (unit, low, high, decimals) for numeric results; None for qualitative results.
LAB_SPEC: dict[str, tuple[str, float, float, int] | None] = {
    "白细胞": ("×10^9/L", 1.2, 15.8, 2), "WBC": ("*10^9/L", 1.5, 16.0, 1),
    "中性粒细胞百分比": ("%", 35, 92, 1), "NEUT%": ("%", 40, 90, 1), "中性粒细胞计数": ("×10^9/L", 0.4, 12.0, 2),
    "血红蛋白": ("g/L", 62, 158, 0), "HGB": ("g/L", 65, 150, 0), "血红蛋白浓度": ("g/L", 60, 150, 0),
    "血小板": ("×10^9/L", 28, 420, 0), "PLT": ("*10^9/L", 30, 380, 0), "红细胞": ("×10^12/L", 2.1, 5.6, 2),
    "血钾": ("mmol/L", 2.8, 6.1, 2), "K": ("mmol/L", 2.9, 5.9, 2), "血钠": ("mmol/L", 126, 148, 1),
    "Na": ("mmol/L", 128, 146, 1), "血氯": ("mmol/L", 92, 110, 1), "白蛋白": ("g/L", 22, 48, 1),
    "总蛋白": ("g/L", 48, 80, 1), "前白蛋白": ("mg/L", 80, 380, 0), "血清钙": ("mmol/L", 1.8, 2.7, 2),
    "血钙": ("mmol/L", 1.7, 2.6, 2),
    "肌酐": ("μmol/L", 45, 980, 1), "Cr": ("umol/L", 50, 860, 0), "尿素氮": ("mmol/L", 2.5, 32.0, 2),
    "尿酸": ("μmol/L", 180, 620, 0), "谷丙转氨酶": ("U/L", 8, 320, 0), "ALT": ("U/L", 9, 280, 0),
    "谷草转氨酶": ("U/L", 10, 260, 0), "AST": ("U/L", 11, 240, 0), "总胆红素": ("μmol/L", 6, 320, 1),
    "直接胆红素": ("μmol/L", 1.5, 260, 1), "血糖": ("mmol/L", 3.6, 18.5, 1), "空腹血糖": ("mmol/L", 4.2, 14.8, 2),
    "餐后2小时血糖": ("mmol/L", 6.1, 22.4, 1), "C反应蛋白": ("mg/L", 0.5, 186, 1), "降钙素原": ("ng/ml", 0.02, 12.5, 2),
    "血沉": ("mm/h", 4, 96, 0), "乳酸脱氢酶": ("U/L", 110, 980, 0), "LDH": ("U/L", 120, 1200, 0),
    "淋巴细胞计数": ("×10^9/L", 0.3, 3.2, 2), "凝血酶原时间": ("s", 10.2, 19.8, 1), "纤维蛋白原": ("g/L", 1.1, 6.2, 2),
    "D-二聚体": ("mg/L", 0.1, 8.6, 2), "CEA": ("ng/ml", 0.8, 286, 2), "CA199": ("U/ml", 3.2, 1250, 1),
    "CA242": ("U/ml", 2.1, 180, 1), "CA724": ("U/ml", 0.9, 96, 2), "CA153": ("U/ml", 4.5, 210, 1),
    "CA125": ("U/ml", 6.8, 2100, 1), "HE4": ("pmol/L", 28, 860, 1), "AFP": ("ng/ml", 1.2, 12000, 1),
    "SCC": ("ng/ml", 0.4, 38, 1), "CYFRA21-1": ("ng/ml", 0.9, 46, 2), "NSE": ("ng/ml", 6.5, 120, 1),
    "ProGRP": ("pg/ml", 18, 980, 1), "PSA": ("ng/ml", 0.3, 86, 2), "胃泌素17": ("pmol/L", 0.6, 30, 1),
    "PO2": ("mmHg", 48, 112, 0), "SaO2": ("%", 82, 99, 0), "PCO2": ("mmHg", 28, 72, 0),
    "血淀粉酶": ("U/L", 35, 1650, 0),
    "脂肪酶": ("U/L", 12, 1800, 0), "γ-谷氨酰转移酶": ("U/L", 10, 680, 0), "碱性磷酸酶": ("U/L", 40, 560, 0),
    "HBV-DNA": ("IU/ml", 1000, 990000, 0), "肌钙蛋白I": ("ng/ml", 0.01, 28.5, 3), "BNP": ("pg/ml", 35, 4800, 0),
    "NT-proBNP": ("pg/ml", 86, 18000, 0), "糖化血红蛋白": ("%", 5.2, 12.8, 1),
    "低密度脂蛋白胆固醇": ("mmol/L", 1.4, 5.6, 2), "甘油三酯": ("mmol/L", 0.6, 6.8, 2),
    "总胆固醇": ("mmol/L", 2.8, 7.9, 2), "肌酸激酶同工酶": ("U/L", 5, 180, 1), "尿微量白蛋白": ("mg/L", 8, 560, 1),
    "eGFR": ("ml/min", 4, 96, 1), "甲状旁腺激素": ("pg/ml", 12, 1200, 1), "24小时尿蛋白定量": ("g/24h", 0.1, 6.8, 2),
    "TSH": ("mIU/L", 0.01, 18.0, 3), "FT3": ("pmol/L", 2.1, 12.5, 2), "FT4": ("pmol/L", 7.5, 38, 2),
    "甲状腺球蛋白": ("ng/ml", 0.2, 260, 2), "TPOAb": ("IU/ml", 5, 600, 1), "降钙素": ("pg/ml", 1.0, 86, 1),
    "β2微球蛋白": ("mg/L", 1.2, 9.8, 2), "网织红细胞": ("%", 0.3, 6.5, 2), "血清铁蛋白": ("ng/ml", 8, 2200, 1),
    "雌二醇": ("pg/ml", 5, 260, 1), "HCG": ("mIU/ml", 0.5, 25, 1), "尿蛋白": None, "大便隐血": None,
    "幽门螺杆菌": None, "尿潜血": None, "痰培养": None, "乙肝表面抗原": None, "宫颈TCT": None, "HPV": None,
    "尿常规": None, "骨髓涂片": None, "免疫固定电泳": None, "外周血涂片": None, "尿培养": None, "血常规": None,
}

# Oral drugs (rendered with po/口服); the rest get ivgtt/静滴 or a cycle day.
ORAL = ("卡培他滨", "希罗达", "替吉奥", "S-1", "吉非替尼", "埃克替尼", "奥希替尼", "阿帕替尼", "安罗替尼",
        "他莫昔芬", "来曲唑", "阿那曲唑", "依西美坦", "索拉非尼", "仑伐替尼", "伊马替尼", "来那度胺", "奥拉帕利",
        "恩替卡韦", "泼尼松", "米非司酮", "替加氟")

QUAL_RESULTS = ("阴性", "阳性", "（-）", "（+）", "弱阳性", "未见异常")

# ---------------------------------------------------------------------------------------------------
# Templates. Syntax: {CODE.variant} is a slot (entity when CODE is a label code, e.g. {DIS.main});
# {lower} are macros expanded from MACROS; {UPPER} without a label code are non-entity fillers
# (dates, numbers); [mention|CODE] is a fixed mention annotated in place.
# A template is either a string or (tags, string); tags must all be features of the passage profile.
# ---------------------------------------------------------------------------------------------------

MACROS: dict[str, tuple[str, ...]] = {
    "sym": ("[腹|ANAT]痛、[腹|ANAT]胀", "[上腹部|ANAT]隐痛不适", "大便带血，次数增多", "[胸|ANAT]闷、气促",
            "咳嗽、咳痰，痰中带血", "[头|ANAT]晕、乏力", "[右上腹|ANAT]胀痛", "进行性吞咽困难",
            "无痛性[颈部|ANAT]包块", "[左乳|ANAT]无痛性肿块", "[阴道|ANAT]不规则流血", "尿频、尿急，排尿困难",
            "[双下肢|ANAT]水肿", "[皮肤|ANAT]、[巩膜|ANAT]黄染", "[心|ANAT]悸、[胸|ANAT]痛", "反复发热",
            "[腰|ANAT]部酸痛", "排便习惯改变", "食欲下降伴消瘦", "肉眼血尿", "[剑突下|ANAT]烧灼感",
            "活动后气促", "[肛门|ANAT]坠胀感"),
    "symq": ("[腹|ANAT]痛", "便血", "咳嗽", "[胸|ANAT]痛", "发现[颈部|ANAT]肿物", "[腹|ANAT]胀", "黑便",
             "吞咽梗阻感", "发现[乳房|ANAT]肿块", "[头|ANAT]痛", "血尿", "乏力"),
    "neg": ("无发热，无[腹|ANAT]痛、[腹|ANAT]泻", "无恶心、呕吐，无[胸|ANAT]闷", "无咳嗽、咳痰",
            "无[头|ANAT]晕、[头|ANAT]痛", "无寒战、高热", "无[心|ANAT]悸、气促", "无黑便、便血"),
    "find": ("{ANAT.site}见一大小约{SIZE}的软组织密度影，边界欠清，增强扫描呈不均匀强化",
             "{ANAT.site}管壁不均匀增厚，周围脂肪间隙模糊", "{ANAT}多发结节，较大者约{SIZE}，考虑转移",
             "{ANAT.node}增大，短径约{SMALL}",
             "[肝|ANAT]内多发低密度灶，考虑[转移瘤|DIS]", "{ANAT.cav}少量积液", "{ANAT}未见明显异常",
             "{ANAT.site}术后改变，未见明确复发征象", "{ANAT.site}占位，考虑{DIS.main}", "[双肺|ANAT]散在小结节，建议随访",
             "{ANAT}局部信号异常，DWI呈高信号", "[胆囊|ANAT]多发结石"),
    "nodeline": ("{ANAT.node}（{N}/{N2}）见癌转移", "{ANAT.node}（0/{N2}）未见癌转移",
                 "{ANAT.node}未见癌转移（0/{N2}）", "另送{ANAT.node}（{N}/{N2}个）见癌转移"),
    "stage": ("pT3N1M0，IIIB期", "pT2N0M0，I期", "pT4aN2M0，IIIC期", "ypT2N0", "T3N0M0，IIA期", "pT1bN0M0"),
    "diet": ("精神、食欲尚可，夜眠一般，二便正常，体重未见明显下降", "精神欠佳，食欲差，近{N}月体重下降约{KG}",
             "精神可，[胃|ANAT]纳一般，大便次数增多，小便正常", "饮食睡眠可，二便如常"),
}

SECTIONS: dict[str, dict[str, tuple]] = {
    "现病史": {
        "open": (
            (("surg",), "患者{DUR}前因“{DIS.main}”于{DATE}在我院全麻下行{OP.main}，手术过程顺利，"),
            "患者{DUR}前无明显诱因出现{sym}，当时未予重视，",
            "患者于{YM}体检时行{IMG}检查发现{ANAT.site}占位，",
            "入院前{DUR}，患者出现{sym}，伴{sym}，",
            "患者{DUR}前因“{symq}{DUR2}”就诊于当地医院，行{IMG}示：{find}，诊断为“{DIS.main}”，",
            (("chemo",), "患者系“{DIS.post}”患者，末次化疗时间为{DATE}，"),
            (("cardio",), "患者{DUR}前于活动后出现[心前区|ANAT]压榨样疼痛，每次持续约{N}分钟，休息后可缓解，"),
            (("renal",), "患者{DUR}前体检发现{LAB.v}，诊断为“{DIS.main}”，"),
            (("heme",), "患者{DUR}前无意中发现{ANAT}肿大，无发热、盗汗，"),
        ),
        "body": (
            "遂至我院门诊就诊，查{LAB.pv}，",
            "{DATE}行{IMG.main}示：{find}。",
            "进一步行{IMG}检查提示{ANAT}未见明确转移征象，",
            (("onc",), "取活检病理提示：{DIS.path}。"),
            (("surg",), "完善术前检查后于{DATE}在全麻下行{OP.main}，术中见肿瘤位于{ANAT.site}，大小约{SIZE}，"),
            (("surg", "onc"), "术后病理示：{DIS.path}，{nodeline}，{ihc}。"),
            (("chemo",), "术后恢复可，先后于{DATE}、{DATE2}行{DRUG.reg}方案化疗{N}周期，过程顺利，"),
            (("chemo",), "具体方案为：{DRUG.regd}，"),
            (("chemo",), "化疗后出现{DIS.tox}，予{DRUG.gcsf}、{DRUG.emesis}等对症处理后好转，"),
            (("onc",), "期间定期复查{IMG}未见明显复发及转移征象，"),
            (("onc",), "{DATE}复查{LAB.tm}，较前明显升高，"),
            "院外期间患者一般情况可，{neg}，",
            "{DUR}前患者再次出现{sym}，",
            "自行口服{DRUG.otc}后症状稍缓解，",
            "当地医院予{DRUG.abx}、{DRUG.abx}抗感染及补液治疗，效果欠佳，",
            (("cardio",), "外院查{LAB.v}，{IMG}提示{ANAT}狭窄约{PCT}，"),
            (("cardio",), "长期口服{DRUG}、{DRUG}治疗，血压、血糖控制欠佳，"),
            (("cardio",), "{DATE}于我院行{OP.main}，于{ANAT}植入支架{N}枚，"),
            (("renal",), "规律随访{LAB.v}，{LAB.v}，未予特殊处理，"),
            (("renal",), "予{DRUG}、{DRUG}等治疗，"),
            (("heme",), "行{OP.main}，骨髓象提示{DIS.path}，"),
            (("heme",), "予{DRUG.reg}方案化疗{N}程，复查{LAB.pv}，"),
            "{DATE}外院{IMG}提示{ANAT.site}异常，建议进一步检查，",
            (("onc",), "门诊查{LAB.tm}，{LAB.tm}，"),
            (("chemo",), "{DATE}起改为{DRUG}单药维持治疗，"),
            (("chemo",), "化疗期间出现{DIS.tox}，予{DRUG.gcsf}皮下注射后恢复，"),
            "入院前{N}天出现{sym}，程度逐渐加重，",
            (("surg",), "术后出现{DIS.other}，经{DRUG.abx}抗感染、{DRUG.ppi}抑酸等处理后好转出院，"),
            "既往有{DIS.co}病史，长期口服{DRUG.chronicd}，",
            (("onc",), "{DATE}复查{IMG}提示{ANAT}多发结节，考虑转移可能，"),
            "为缓解症状，予{DRUG.sup}对症支持治疗，",
            (("cardio",), "{DATE}复查{IMG.main}示{ANAT}中度狭窄，"),
            (("renal",), "近{N}月尿量减少，复查{LAB.pv}，"),
            (("heme",), "行{OP}，[骨髓涂片|LAB]提示原始细胞约占{PCT}，"),
            "病程中{neg}，",
        ),
        "close": (
            (("surg",), "今为进一步治疗来我院，门诊以“{DIS.post}”收入我科。"),
            (("chemo",), "现为行下一周期化疗入院，门诊拟“{DIS.main}”收入院。"),
            "为求进一步诊治，门诊以“{DIS.main}”收住入院。起病以来，{diet}。",
            (("surg",), "现患者为求手术治疗来我院，门诊以“{DIS.main}”收入院。病程中{diet}。"),
            "现为复查再次来院，门诊以“{DIS.main}，{DIS.co}”收入院。",
        ),
    },
    "出院小结": {
        "open": (
            "患者因“{DIS.main}”于{DATE}入院，",
            "入院情况：患者{SEX}，{AGE}岁，因“{symq}{DUR}”入院。",
            "入院诊断：1.{DIS.main}；2.{DIS.co}。",
        ),
        "body": (
            "入院后完善{LAB.panel}、{LAB.panel}、{IMG}等相关检查，",
            "查{LAB.v}，{LAB.v}，{LAB.v}。",
            "{IMG.main}提示：{find}。",
            (("surg",), "排除手术禁忌后于{DATE}在全麻下行{OP.main}，术程顺利，"),
            (("surg",), "术后予{DRUG.abx}抗感染、{DRUG.ppi}抑酸、{DRUG.sup}等支持治疗，"),
            (("chemo",), "于{DATE}予{DRUG.regd}化疗，辅以保[肝|ANAT]、护[胃|ANAT]、{DRUG.emesis}止吐等处理，"),
            (("onc",), "术后病理：{DIS.path}。"),
            "住院期间复查{LAB.v}，",
            (("surg",), "患者切口愈合良好（甲级愈合），无发热，无[腹|ANAT]痛。"),
            (("cardio",), "予{DRUG}、{DRUG}、{DRUG}等抗血小板、调脂稳定斑块及控制心室率治疗，"),
            (("cardio",), "{DATE}行{OP.main}，术中见{ANAT}狭窄约{PCT}，"),
            (("renal",), "予{DRUG}、{DRUG}等对症治疗，"),
            (("heme",), "予{DRUG.regd}化疗，化疗后出现{DIS.tox}，予{DRUG.gcsf}升白治疗，"),
            "住院期间出现{DIS.other}，予{DRUG.sup}等处理后好转，",
            "复查{IMG}示：{find}。",
            "诊疗经过：予{DRUG.abx}抗感染、{DRUG.ppi}护[胃|ANAT]等治疗，",
            (("chemo",), "本周期化疗耐受可，未诉明显恶心、呕吐，"),
            "住院期间监测{LAB.v}，{LAB.v}，",
            (("onc",), "病理分期：{stage}。"),
            (("cardio",), "复查{IMG}示{ANAT}血流通畅，"),
            "出院情况：患者一般情况可，[腹|ANAT]软，无压痛。",
            "出院诊断：1.{DIS.main}；2.{DIS.co}；3.{DIS.other}。",
        ),
        "close": (
            "出院医嘱：1.继续口服{DRUG.chronicd}；2.{N}周后返院复查{LAB.panel}、{LAB.panel}；3.不适随诊。",
            "患者病情好转，予今日出院。",
            "出院时患者一般情况可，{neg}。",
        ),
    },
    "手术记录": {
        "open": (
            (("surg",), "手术名称：{OP.main}。术前诊断：{DIS.main}。麻醉方式：全身麻醉。"),
            (("surg",), "于{DATE}在全麻下行{OP.main}，"),
            (("surg",), "患者取仰卧位，全麻成功后常规消毒铺巾，拟行{OP.main}，"),
        ),
        "body": (
            (("surg", "gi"), "取[脐|ANAT]下缘切口置入腹腔镜，建立气腹，压力维持于12mmHg，"),
            (("surg", "gi"), "探查见[腹腔|ANAT]内少量淡黄色积液，[肝|ANAT]、[脾|ANAT]未见明显转移结节，"),
            (("surg",), "肿瘤位于{ANAT.site}，大小约{SIZE}，质硬，边界欠清，"),
            (("surg",), "{ANAT.node}肿大，质中，予以清扫，"),
            (("surg",), "游离{ANAT}，结扎切断相应血管，"),
            (("surg", "gi"), "距肿瘤下缘约{SMALL}处切断{ANAT.site}，行端端吻合，"),
            (("surg", "onc"), "术中冰冻病理提示{DIS.path}，"),
            (("surg",), "术中出血约{ML}，未输血，"),
            (("surg",), "于{ANAT.cav}放置引流管一根，"),
            (("surg",), "术中予{DRUG.abx}预防感染，"),
            (("surg", "chest"), "于[腋中线|ANAT]第{N}肋间做观察孔，探查见[胸腔|ANAT]无粘连，"),
            (("surg", "breast"), "于{ANAT.site}做梭形切口，切除范围距肿块边缘约{SMALL}，"),
            (("surg", "thyroid"), "显露并保护[喉返神经|ANAT]，术中见{ANAT.site}一结节，大小约{SIZE}，"),
            (("surg", "gyne"), "探查见{ANAT.site}增大，{ANAT}表面光滑，"),
            (("surg", "renal"), "置入电切镜，见{ANAT.site}黏膜充血，可见一菜花样肿物约{SIZE}，"),
            (("surg", "gi"), "常规消毒铺巾后，于{ANAT.abd}做长约{SMALL}切口，逐层切开皮肤、皮下组织，"),
            (("surg",), "分离粘连，充分显露{ANAT.site}，"),
            (("surg",), "于根部结扎切断相应血管，清扫周围淋巴脂肪组织，"),
            (("surg",), "术中快速病理回报：{ANAT.node}未见癌转移，"),
            (("surg",), "仔细探查{ANAT.cav}，未见明显种植转移灶，"),
            (("surg",), "创面仔细止血，确认无活动性出血，"),
            (("surg",), "术中补液约{ML}，尿量约{ML}，"),
            (("surg",), "以超声刀离断{ANAT}周围组织，"),
            (("surg",), "清点器械纱布无误，"),
            (("surg",), "用温蒸馏水冲洗{ANAT.cav}，"),
            (("surg",), "标本剖视见肿物切面灰白，大小约{SIZE}，"),
            (("surg",), "术中生命体征平稳，予{DRUG.sup}静滴，"),
            (("surg", "gi"), "于{ANAT.abd}行预防性造口，"),
            (("surg", "gi"), "检查吻合口无张力、血运良好，"),
            (("surg",), "逐层关闭切口，术毕安返病房，"),
            (("surg",), "切除标本送病理检查。"),
        ),
        "close": (
            (("surg",), "术后诊断：{DIS.main}。"),
            (("surg",), "手术顺利，麻醉满意，术后转入病房继续治疗。"),
        ),
    },
    "病理报告": {
        "open": (
            (("onc",), "（{ANAT.site}）{DIS.path}，肿块大小{SIZE}，侵达{LAYER}。"),
            (("onc",), "送检：{OP.main}标本。"),
            (("onc",), "（{ANAT.site}活检）{DIS.path}。"),
            (("onc",), "病理诊断：{DIS.path}。"),
        ),
        "body": (
            (("surg", "onc"), "上、下切缘及另送“近端切缘”、“远端切缘”均未见癌。"),
            (("onc",), "{nodeline}。"),
            (("onc",), "{ihc}。"),
            (("onc",), "病理分期：{stage}。"),
            "另见{DIS.other}。",
            (("onc",), "脉管内见癌栓，神经束未见侵犯。"),
        ),
        "close": (
            "请结合临床。",
            "（病理号{PATHNO}）",
        ),
    },
    "检查所见": {
        "open": (
            "检查项目：{IMG.main}。",
            "{IMG.main}（{DATE}）：",
            "{DATE}{IMG.main}示：",
        ),
        "body": (
            "{find}；",
            "{find}；",
            "与{DATE2}片比较：{ANAT.site}病灶较前缩小；",
            "{ANAT.reg}未见肿大淋巴结；",
            "[肝|ANAT]、[胆|ANAT]、[胰|ANAT]、[脾|ANAT]未见明显异常；",
        ),
        "close": (
            "诊断意见：1.{DIS.main}，请结合临床；2.{DIS.co}。",
            "印象：{DIS.main}，建议复查。",
            "意见：考虑{DIS.other}可能，建议{IMG}进一步检查。",
        ),
    },
    "实验室检查": {
        "open": (
            "{LAB.pv}，",
            "{DATE}复查{LAB.pv}，",
            "入院后查{LAB.pv}，",
        ),
        "body": (
            "{LAB.v}，{LAB.v}；",
            (("onc",), "复查{LAB.tm}，{LAB.tm}；"),
            "{LAB.pv}；",
            "{LAB.pv}；",
            "{LAB.v}；",
        ),
        "close": (
            "余未见明显异常。",
            "{LAB.panel}、{LAB.panel}未见明显异常。",
        ),
    },
    "既往史": {
        "open": (
            "既往有“{DIS.co}”病史{N}年，规律口服{DRUG.chronicd}，控制可；",
            "平素健康状况一般，有“{DIS.co}”病史{N}年余，",
        ),
        "body": (
            "{YEAR}年{pastop}，",
            "{YEAR}年于外院{pastop}，术后恢复可，",
            "有“{DIS.co}”史，长期服用{DRUG.chronic}，",
            "对“{DRUG.abx}”过敏，表现为皮疹；",
            "否认外伤史，否认输血史；",
            "{YEAR}年曾因{DIS.co}住院治疗，",
        ),
        "close": (
            "预防接种史不详。",
            "否认其他慢性病史。",
        ),
    },
    "体格检查": {
        "open": (
            "T：{T}℃，P：{HR}次/分，R：{RR}次/分，BP：{BP}mmHg。",
            "体温{T}℃，脉搏{HR}次/分，血压{BP}mmHg。",
        ),
        "body": (
            "神志清楚，[皮肤|ANAT]、[巩膜|ANAT]无黄染，[全身浅表淋巴结|ANAT]未触及肿大。",
            "[双肺|ANAT]呼吸音清，未闻及干湿性啰音。",
            "[心|ANAT]率{HR}次/分，律齐，各瓣膜区未闻及杂音。",
            "[腹|ANAT]平软，{ANAT.abd}压痛，无反跳痛，[肝|ANAT]、[脾|ANAT]肋下未触及。",
            "[双下肢|ANAT]无水肿。",
            (("palp",), "专科检查：{ANAT.site}可触及一大小约{SIZE}肿块，质硬，活动度差。"),
            (("gi",), "直肠指检：距[肛缘|ANAT]约{SMALL}未触及肿物，指套无血染。"),
            "{ANAT.abd}可见一长约{SMALL}陈旧性手术瘢痕。",
        ),
        "close": (
            "余查体无特殊。",
            "神经系统查体未见异常。",
        ),
    },
}

# Section -> (weight, (min target length, max target length)) for ordinary passages.
SECTION_PLAN: dict[str, tuple[float, tuple[int, int]]] = {
    "现病史": (0.30, (120, 440)),
    "出院小结": (0.17, (120, 420)),
    "手术记录": (0.12, (120, 420)),
    "病理报告": (0.10, (80, 260)),
    "检查所见": (0.10, (80, 300)),
    "实验室检查": (0.07, (80, 260)),
    "既往史": (0.06, (80, 220)),
    "体格检查": (0.08, (80, 300)),
}
LONG_SECTIONS = ("现病史", "出院小结", "手术记录")
LONG_EVERY = 6  # every 6th passage targets more than 512 characters
LONG_TARGET = (540, 680)

LAYERS = ("浆膜层", "肌层", "黏膜下层", "外膜", "浆膜下脂肪组织", "固有肌层")

# ---------------------------------------------------------------------------------------------------
# Composition
# ---------------------------------------------------------------------------------------------------

Piece = tuple[str, str | None]  # (text, label or None)
Template = str | tuple[tuple[str, ...], str]  # a template string, or (required profile tags, string)
TOKEN = re.compile(r"\{([A-Za-z0-9]+)(?:\.(\w+))?\}|\[([^\[\]|]+)\|([A-Z]+)\]")
HALF = str.maketrans({"，": ",", "：": ":", "（": "(", "）": ")", "；": ";"})


def inline_mentions() -> dict[str, list[str]]:
    """Mentions fixed in templates (``[text|CODE]``), per label; they are never held out."""
    found: dict[str, list[str]] = {label: [] for label in LABELS}
    texts: list[str] = [t for group in MACROS.values() for t in group]
    for section in SECTIONS.values():
        for group in section.values():
            texts.extend(t if isinstance(t, str) else t[1] for t in group)
    for text in texts:
        for m in TOKEN.finditer(text):
            if m.group(3):
                found[CODE[m.group(4)]].append(m.group(3))
    return found


def slot_lists() -> list[tuple[str, tuple[str, ...]]]:
    """Every (label, filler list) a slot draws from, in a fixed order."""
    keymap = {"dis": DIS, "path": DIS, "other": DIS, "op": OP, "anat": ANAT, "site": ANAT, "node": ANAT,
              "cav": ANAT, "drug": DRUG, "lab": LAB, "img": IMG}
    lists = [(label, prof[key]) for _, prof in sorted(PROFILES.items()) for key, label in keymap.items()
             if prof.get(key)]
    lists += [(label, GENERAL[key]) for key, label in GENERAL_LABEL.items()]
    lists += [(DIS, tuple(d for d, _ in PAST_PAIRS)), (OP, tuple(o for _, o in PAST_PAIRS))]
    lists += [(LAB, members) for _, members in sorted(PANEL_MEMBERS.items())]
    return lists


def filler_pools() -> dict[str, list[str]]:
    """Every filler string per label (sorted, unique)."""
    pools: dict[str, list[str]] = {label: [] for label in LABELS}
    for label, items in slot_lists():
        pools[label].extend(items)
    return {label: sorted(set(items)) for label, items in pools.items()}


def choose_heldout(seed: int) -> dict[str, frozenset[str]]:
    """About HELDOUT_FRACTION of each label's filler strings, never used in train.

    Mentions fixed in templates are never held out, and every filler list keeps at least half of its
    strings for train, so no slot loses its training examples.
    """
    fixed = inline_mentions()
    rng = random.Random(seed * 7919 + 1)
    held: dict[str, set[str]] = {}
    for label, items in filler_pools().items():
        candidates = [s for s in items if s not in fixed[label]]
        rng.shuffle(candidates)
        held[label] = set(candidates[: round(HELDOUT_FRACTION * len(items))])
    for label, items in slot_lists():
        out = sorted(s for s in set(items) if s in held[label])
        rng.shuffle(out)
        while out and len(set(items)) - len(out) < (len(set(items)) + 1) // 2:
            held[label].discard(out.pop())
    return {label: frozenset(strings) for label, strings in held.items()}


class Passage:
    """State for one passage: profile, split policy, cached 'main' choices and style flags."""

    def __init__(self, rng: random.Random, profile: str, split: str,
                 heldout: dict[str, frozenset[str]]) -> None:
        self.rng = rng
        self.name = profile
        self.prof = PROFILES[profile]
        self.feat = set(self.prof["feat"])
        self.split = split
        self.heldout = heldout
        self.cache: dict[str, object] = {}
        self.used: set[str] = set()
        self.half = rng.random() < 0.3  # some half-width punctuation
        self.upper = rng.random() < 0.35  # upper-case units (CM, MG), as in many EMRs

    # -- entity choice ------------------------------------------------------------------------------
    def pick(self, label: str, candidates: Sequence[str], fallback: Sequence[str] = ()) -> str:
        """One filler for ``label``: train never sees held-out strings; dev draws one with DEV_HELDOUT_P."""
        held = self.heldout[label]
        if self.split == "train":
            pool = [c for c in candidates if c not in held] or [c for c in fallback if c not in held]
        else:
            pool = list(candidates) or list(fallback)
            unseen = [c for c in pool if c in held]
            if unseen and self.rng.random() < DEV_HELDOUT_P:
                pool = unseen
            else:
                pool = [c for c in pool if c not in held] or pool
        if not pool:
            raise ValueError(f"empty filler pool for {label} in profile {self.name}")
        fresh = [c for c in pool if c not in self.used]
        choice = self.rng.choice(fresh or pool)
        self.used.add(choice)
        return choice

    def past_op(self) -> list[Piece]:
        """因“diagnosis”行operation, from PAST_PAIRS; held-out rules apply to both strings."""
        held_dis, held_op = self.heldout[DIS], self.heldout[OP]
        ok = [pair for pair in PAST_PAIRS if pair[0] not in held_dis and pair[1] not in held_op]
        unseen = [pair for pair in PAST_PAIRS if pair not in ok]
        if self.split == "dev" and unseen and self.rng.random() < DEV_HELDOUT_P:
            ok = unseen
        dis, op = self.rng.choice(ok)
        return [("因“", None), (dis, DIS), ("”行", None), (op, OP)]

    def cached(self, key: str, make: Callable[[], object]) -> object:
        if key not in self.cache:
            self.cache[key] = make()
        return self.cache[key]

    # -- non-entity fillers -------------------------------------------------------------------------
    def unit(self, u: str) -> str:
        return u.upper() if self.upper else u

    def date(self) -> str:
        r = self.rng
        y, m, d = r.randint(2010, 2019), r.randint(1, 12), r.randint(1, 28)
        return r.choice((f"{y}-{m:02d}-{d:02d}", f"{y}年{m}月{d}日", f"{y}.{m:02d}.{d:02d}", f"{y}-{m}-{d}"))

    def size(self) -> str:
        r = self.rng
        a, b, c = (round(r.uniform(0.5, 8.0), 1) for _ in range(3))
        cm = self.unit("cm")
        return r.choice((f"{a}*{b}{cm}", f"{a}×{b}{cm}", f"{a}{cm}×{b}{cm}", f"{a}*{b}*{c}{cm}", f"{a}x{b}{cm}"))

    def filler(self, name: str) -> str:
        r = self.rng
        if name in ("DATE", "DATE2"):
            return self.date()
        if name == "YM":
            return f"{r.randint(2012, 2019)}年{r.randint(1, 12)}月"
        if name == "YEAR":
            return str(r.randint(1995, 2016))
        if name in ("DUR", "DUR2"):
            return r.choice((f"{r.randint(2, 11)}月", f"{r.randint(1, 6)}年余", f"{r.randint(3, 20)}天",
                             f"{r.randint(1, 4)}周", f"{r.randint(2, 9)}个月余", "半年", f"{r.randint(1, 3)}+年"))
        if name == "N":
            return str(r.randint(1, 6))
        if name == "N2":
            return str(r.randint(7, 24))
        if name == "SIZE":
            return self.size()
        if name == "SMALL":
            return f"{round(r.uniform(0.3, 6.0), 1)}{self.unit('cm')}"
        if name == "ML":
            return f"{r.choice((20, 50, 80, 100, 150, 200, 300))}{self.unit('ml')}"
        if name == "KG":
            return f"{r.randint(2, 10)}{self.unit('kg')}"
        if name == "PCT":
            return f"{r.choice((50, 60, 70, 75, 80, 85, 90, 95, 99))}%"
        if name == "T":
            return f"{round(r.uniform(36.2, 39.4), 1)}"
        if name == "HR":
            return str(r.randint(58, 118))
        if name == "RR":
            return str(r.randint(16, 24))
        if name == "BP":
            return f"{r.randint(98, 176)}/{r.randint(58, 102)}"
        if name == "AGE":
            return str(r.randint(28, 86))
        if name == "SEX":
            return r.choice(("男", "女"))
        if name == "LAYER":
            return r.choice(LAYERS)
        if name == "PATHNO":
            return f"{r.randint(2012, 2019)}{r.randint(10000, 99999)}"
        raise KeyError(f"unknown filler {{{name}}}")

    # -- entity slots -------------------------------------------------------------------------------
    def lab_value(self, name: str) -> list[Piece]:
        r = self.rng
        spec = LAB_SPEC.get(name)
        if spec is None:
            result = r.choice(QUAL_RESULTS)
            sep = "" if result.startswith("（") else r.choice(("：", "", " "))
            return [(name, LAB), (f"{sep}{result}", None)]
        unit, lo, hi, dec = spec
        value = round(r.uniform(lo, hi), dec)
        number = f"{value:.{dec}f}" if dec else str(int(value))
        frac = (value - lo) / (hi - lo)
        flag = "↑" if frac > 0.6 and r.random() < 0.6 else "↓" if frac < 0.15 and r.random() < 0.6 else ""
        # a name ending in a digit or letter (CA199, Cr) is never glued to its number
        sep = r.choice((" ", "：", "为") if name[-1].isascii() and name[-1].isalnum() else (" ", "：", "", "为"))
        space = r.choice(("", " "))
        return [(name, LAB), (f"{sep}{number}{space}{unit}{flag}", None)]

    def drug_dose(self, name: str) -> str:
        r = self.rng
        if name in ORAL:
            amount = r.choice((40, 50, 60, 100, 150, 250, 500, 1000, 1500))
            return f" {amount}{self.unit('mg')} {r.choice(('po bid', '口服 bid', 'd1-14', 'qd'))}"
        amount = r.choice((0.2, 0.3, 1.0, 60, 80, 100, 130, 150, 175, 200, 400, 600))
        unit = self.unit("g") if amount < 5 else self.unit("mg")
        days = r.choice(("D1", "d1", "D1-D5", "d1,8", "ivgtt d1", "静滴 D1"))
        return f" {amount}{unit} {days}"

    def regimen(self) -> list[str]:
        drugs = self.prof["drug"]
        n = min(len(drugs), self.rng.choice((1, 2, 2, 3)))
        chosen: list[str] = []
        for _ in range(n):
            chosen.append(self.pick(DRUG, [d for d in drugs if d not in chosen], GENERAL["sup"]))
        return chosen

    def slot(self, code: str, variant: str | None) -> list[Piece]:
        """Expand one ``{CODE.variant}`` entity slot into pieces."""
        p, g, r = self.prof, GENERAL, self.rng
        label = CODE[code]
        if code == "DIS":
            if variant == "main":
                return [(str(self.cached("dis", lambda: self.pick(DIS, p["dis"]))), DIS)]
            if variant == "post":
                main = str(self.cached("dis", lambda: self.pick(DIS, p["dis"])))
                return [(main + "术后", DIS)]
            if variant == "path":
                return [(self.pick(DIS, p["path"], p["dis"]), DIS)]
            if variant == "other":
                return [(self.pick(DIS, p["other"], g["co"]), DIS)]
            if variant == "tox":
                return [(self.pick(DIS, g["tox"]), DIS)]
            if variant == "co":
                return [(self.pick(DIS, g["co"]), DIS)]
            return [(self.pick(DIS, p["dis"] + p["other"]), DIS)]
        if code == "OP":
            if variant == "main":
                return [(str(self.cached("op", lambda: self.pick(OP, p["op"]))), OP)]
            return [(self.pick(OP, p["op"]), OP)]
        if code == "ANAT":
            if variant == "site":
                return [(str(self.cached("site", lambda: self.pick(ANAT, p["site"], p["anat"]))), ANAT)]
            if variant == "node":
                return [(self.pick(ANAT, p["node"], g["region"]), ANAT)]
            if variant == "cav" and p.get("cav"):
                return [(self.pick(ANAT, p["cav"], g["cavity"]), ANAT)]
            if variant in ("g", "abd", "cav", "reg"):
                key = {"g": "anat", "abd": "abd", "cav": "cavity", "reg": "region"}[variant]
                return [(self.pick(ANAT, g[key]), ANAT)]
            return [(self.pick(ANAT, p["anat"], g["anat"]), ANAT)]
        if code == "LAB":
            if variant == "panel":
                return [(self.pick(LAB, g["panel"]), LAB)]
            if variant == "pv":  # panel：member value，member value
                panel = self.pick(LAB, sorted(PANEL_MEMBERS))
                pieces = [(panel, LAB), (r.choice(("：", "示", "：", " ")), None)]
                members = list(PANEL_MEMBERS[panel])
                for k in range(r.randint(1, min(3, len(members)))):
                    if k:
                        pieces.append((r.choice(("，", "，", "、")), None))
                    name = self.pick(LAB, members, g["lab"])
                    members = [m for m in members if m != name] or members
                    pieces.extend(self.lab_value(name))
                return pieces
            if variant == "tm":
                return self.lab_value(self.pick(LAB, p["lab"], g["lab"]))
            if variant == "v":
                pool = p["lab"] if r.random() < 0.4 else g["lab"]
                return self.lab_value(self.pick(LAB, pool, g["lab"]))
            return [(self.pick(LAB, p["lab"] + g["lab"]), LAB)]
        if code == "IMG":
            if variant == "main":
                return [(str(self.cached("img", lambda: self.pick(IMG, p["img"], g["img"]))), IMG)]
            pool = p["img"] if r.random() < 0.6 else g["img"]
            return [(self.pick(IMG, pool, g["img"]), IMG)]
        if code == "DRUG":
            if variant in ("reg", "regd"):
                drugs = self.cached("reg", self.regimen)
                assert isinstance(drugs, list)
                pieces: list[Piece] = []
                joiner = r.choice(("+", "+", "、", "联合"))
                for i, d in enumerate(drugs):
                    if i:
                        pieces.append((joiner, None))
                    pieces.append((d, DRUG))
                    if variant == "regd":
                        pieces.append((self.drug_dose(d), None))
                return pieces
            if variant in ("sup", "abx", "ppi", "emesis", "gcsf", "otc", "chronic"):
                return [(self.pick(DRUG, g[variant]), DRUG)]
            if variant == "chronicd":
                name = self.pick(DRUG, g["chronic"])
                dose = CHRONIC_DOSE[name]
                return [(name, DRUG), (" " + (dose.upper() if self.upper else dose), None)]
            return [(self.pick(DRUG, p["drug"], g["sup"]), DRUG)]
        raise KeyError(f"unknown slot {{{code}.{variant}}} for {label}")

    def expand(self, template: str) -> list[Piece]:
        """Render one template string into pieces (recursing into macros)."""
        pieces: list[Piece] = []
        pos = 0
        for m in TOKEN.finditer(template):
            if m.start() > pos:
                pieces.append((template[pos : m.start()], None))
            pos = m.end()
            if m.group(3):  # [mention|CODE]
                pieces.append((m.group(3), CODE[m.group(4)]))
                continue
            name, variant = m.group(1), m.group(2)
            if name in CODE:
                pieces.extend(self.slot(name, variant))
            elif name == "pastop":
                pieces.extend(self.past_op())
            elif name == "ihc":
                head = self.rng.choice(("免疫组化：", "免疫组化染色示：", "IHC："))
                pieces.append((head + self.rng.choice(self.prof["ihc"]), None))
            elif name in ("sym", "symq") and self.rng.random() < 0.75:
                pieces.extend(self.expand(self.rng.choice(self.prof["sym"])))
            elif name in MACROS:
                pieces.extend(self.expand(self.rng.choice(MACROS[name])))
            else:
                pieces.append((self.filler(name), None))
        if pos < len(template):
            pieces.append((template[pos:], None))
        return pieces

    def fits(self, template: Template) -> bool:
        """True when the profile has every tag the template requires."""
        return isinstance(template, str) or set(template[0]) <= self.feat

    def text_of(self, template: Template) -> str:
        return template if isinstance(template, str) else template[1]


def assemble(pieces: Sequence[Piece], half: bool, rng: random.Random) -> tuple[str, list[dict]]:
    """Concatenate pieces, recording entity spans; literal pieces may switch to half-width punctuation."""
    out: list[str] = []
    spans: list[dict] = []
    pos = 0
    for text, label in pieces:
        if label is None and half and rng.random() < 0.7:
            text = text.translate(HALF)
        if label is not None:
            spans.append({"start": pos, "end": pos + len(text), "label": label, "text": text})
        out.append(text)
        pos += len(text)
    return "".join(out), spans


def section_plan(rng: random.Random, n: int) -> list[str]:
    """Sections for ``n`` passages in SECTION_PLAN proportions (each at least once), shuffled."""
    names = list(SECTION_PLAN)
    total = sum(w for w, _ in SECTION_PLAN.values())
    plan = [name for name in names for _ in range(max(1, round(n * SECTION_PLAN[name][0] / total)))]
    while len(plan) < n:
        plan.append(names[len(plan) % len(names)])
    rng.shuffle(plan)
    return plan[:n]


def compose(rng: random.Random, split: str, heldout: dict[str, frozenset[str]], section: str,
            long: bool) -> dict:
    """One passage of ``section``, at least MIN_LEN characters (more than 512 when ``long``)."""
    for _ in range(50):
        rec = compose_once(rng, split, heldout, section, long)
        if len(rec["text"]) >= (LONG_MIN if long else MIN_LEN):
            return rec
    raise RuntimeError("could not compose a passage of the requested length; add body templates")


def compose_once(rng: random.Random, split: str, heldout: dict[str, frozenset[str]], section: str,
                 long: bool) -> dict:
    """One passage: profile, sentences until the target length; returns text/spans/meta."""
    lo, hi = LONG_TARGET if long else SECTION_PLAN[section][1]
    spec = SECTIONS[section]
    profiles = sorted(PROFILES)
    while True:
        st = Passage(rng, rng.choice(profiles), split, heldout)
        opens = [t for t in spec["open"] if st.fits(t)]
        bodies = [i for i, t in enumerate(spec["body"]) if st.fits(t)]
        closes = [t for t in spec["close"] if st.fits(t)]
        if opens and bodies and closes:
            break
    target = rng.randint(lo, hi)
    head = st.expand(st.text_of(rng.choice(opens)))
    tail = st.expand(st.text_of(rng.choice(closes))) if rng.random() < 0.85 else []
    size = sum(len(t) for t, _ in head + tail)
    chosen: dict[int, list[Piece]] = {}
    order = bodies[:]
    rng.shuffle(order)
    for i in order:
        if size >= target:
            break
        pieces = st.expand(st.text_of(spec["body"][i]))
        extra = sum(len(t) for t, _ in pieces)
        if size + extra <= MAX_LEN:
            chosen[i] = pieces
            size += extra
    body = [p for i in sorted(chosen) for p in chosen[i]]
    pieces = head + body + tail
    if rng.random() < 0.15:  # many real records begin with a stray comma
        pieces = [("，", None)] + pieces
    text, spans = assemble(pieces, st.half, rng)
    return {"text": text, "spans": spans, "meta": {"section": section}}


def check(record: dict) -> None:
    """Raise ValueError unless spans are exact, labelled, sorted, non-overlapping and non-touching."""
    text, prev_end = record["text"], -1
    for s in record["spans"]:
        where = f"record {record['id']}, span at {s['start']}:{s['end']}"
        if text[s["start"] : s["end"]] != s["text"] or s["start"] >= s["end"]:
            raise ValueError(f"{where}: text[start:end] differs from the mention; fix the template")
        if s["label"] not in LABELS:
            raise ValueError(f"{where}: unknown label; fix: use one of {', '.join(LABELS)}")
        if s["start"] <= prev_end:
            raise ValueError(f"{where}: overlaps or touches the previous span; fix: separate the slots")
        prev_end = s["end"]


def generate(seed: int, n_train: int, n_dev: int) -> dict[str, list[dict]]:
    """Both splits, as lists of jsonl-ready dicts; passage texts are unique across splits."""
    heldout = choose_heldout(seed)
    rng = random.Random(seed)
    seen: set[str] = set()
    splits: dict[str, list[dict]] = {}
    for split, n in (("train", n_train), ("dev", n_dev)):
        records: list[dict] = []
        plan = section_plan(rng, n)
        while len(records) < n:
            i = len(records)
            long = i % LONG_EVERY == LONG_EVERY // 2
            section = LONG_SECTIONS[(i // LONG_EVERY) % len(LONG_SECTIONS)] if long else plan[i]
            rec = compose(rng, split, heldout, section, long)
            if rec["text"] in seen:
                continue
            seen.add(rec["text"])
            out = {"id": f"sample-{split}-{i + 1:04d}", **rec}
            check(out)
            records.append(out)
        splits[split] = records
    return splits


def counts(records: Sequence[dict]) -> dict[str, int]:
    """Mentions per label, in LABELS order."""
    c = {label: 0 for label in LABELS}
    for rec in records:
        for s in rec["spans"]:
            c[s["label"]] += 1
    return c


def stats_table(splits: dict[str, list[dict]]) -> str:
    """Markdown table of records and mentions per label for each split."""
    train, dev = counts(splits["train"]), counts(splits["dev"])
    lines = ["| type | train | dev |", "|---|---:|---:|"]
    lines += [f"| {label} | {train[label]} | {dev[label]} |" for label in LABELS]
    lines.append(f"| all mentions | {sum(train.values())} | {sum(dev.values())} |")
    lines.append(f"| records | {len(splits['train'])} | {len(splits['dev'])} |")
    return "\n".join(lines)


def write(splits: dict[str, list[dict]], out_dir: Path) -> list[Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for split, records in splits.items():
        path = out_dir / f"{split}.jsonl"
        with path.open("w", encoding="utf-8", newline="\n") as fh:
            for rec in records:
                fh.write(json.dumps(rec, ensure_ascii=False, separators=(",", ":")) + "\n")
        paths.append(path)
    return paths


def main(argv: Sequence[str] | None = None) -> int:
    root = Path(__file__).resolve().parents[1]
    ap = argparse.ArgumentParser(description="Write the synthetic sample corpus (train.jsonl, dev.jsonl).")
    ap.add_argument("--out-dir", type=Path, default=root / "data" / "sample", help="output folder")
    ap.add_argument("--seed", type=int, default=DEFAULT_SEED, help="random seed (default %(default)s)")
    ap.add_argument("--train", type=int, default=DEFAULT_TRAIN, help="train records (default %(default)s)")
    ap.add_argument("--dev", type=int, default=DEFAULT_DEV, help="dev records (default %(default)s)")
    ap.add_argument("--stats", action="store_true", help="print mention counts per type (Markdown)")
    args = ap.parse_args(argv)
    problem = None
    if args.out_dir.exists() and not args.out_dir.is_dir():
        problem = f"--out-dir {args.out_dir} is a file; fix: pass a folder (it is created if missing)"
    elif args.train < 1 or args.dev < 1:
        problem = f"--train and --dev must be >= 1, got {args.train} and {args.dev}; fix: pass positive counts"
    if problem:
        print(f"make_sample.py: error: {problem}", file=sys.stderr)
        return 2
    splits = generate(args.seed, args.train, args.dev)
    paths = write(splits, args.out_dir)
    print("wrote " + ", ".join(f"{p} ({len(splits[p.stem])} records)" for p in paths))
    if args.stats:
        print(stats_table(splits))
    return 0


if __name__ == "__main__":
    sys.exit(main())
