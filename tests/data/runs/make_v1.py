import sys, json, shutil
sys.path.insert(0, "/work/main/tests")
from pathlib import Path
from medner.corpus import write_jsonl
from tiny_model import build_encoder_dir, make_records, write_config
from medner.config import load_config
from medner.train import finetune
import medner
root = Path("/tmp/fx/work"); shutil.rmtree(root, ignore_errors=True)
corpus = root / "corpus"; corpus.mkdir(parents=True)
train, dev = make_records(24, 1), make_records(6, 2)
write_jsonl(train, corpus / "train.jsonl"); write_jsonl(dev, corpus / "dev.jsonl")
build_encoder_dir(corpus / "encoder", [r.text for r in train + dev], hidden=16, layers=1)
cfg = load_config(write_config(root, corpus, epochs=2), [f"output_dir={root/'run'}"])
run = finetune(cfg, progress=False)
ann = medner.load(run)
texts = ["患者因直肠癌入院，予奥沙利铂治疗。", "查体示右肺压痛，无发热。"]
preds = [[s.to_dict(t) for s in spans] for t, spans in zip(texts, ann.predict(texts))]
out = Path("/tmp/fx/run_v1"); shutil.rmtree(out, ignore_errors=True)
shutil.copytree(run, out, ignore=shutil.ignore_patterns("checkpoint", "training.png", "dev_report.*", "metrics.jsonl"))
(out.parent / "run_v1_predictions.json").write_text(json.dumps({"texts": texts, "spans": preds}, ensure_ascii=False, indent=1), encoding="utf-8")
print(preds)
