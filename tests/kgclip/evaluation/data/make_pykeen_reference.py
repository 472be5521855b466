"""Writes pykeen_reference.json: a small score tensor, triplets with splits, and PyKEEN's metrics for them.

How the reference numbers were made (run once; pykeen is not a kgclip dependency):

    python -m venv /tmp/pkvenv
    echo /path/to/kgclip/.venv/lib/python3.11/site-packages > /tmp/pkvenv/lib/python3.11/site-packages/kgclip.pth  # reuse torch
    /tmp/pkvenv/bin/pip install pykeen          # pykeen 1.11.1, torch 2.14.1
    /tmp/pkvenv/bin/python tests/kgclip/evaluation/data/make_pykeen_reference.py

The model is PyKEEN's own mock ``FixedModel`` with its score function replaced by a lookup in the
score tensor S[h, r, t] (small integers, so that ties are exact and many); PyKEEN's
``RankBasedEvaluator.evaluate`` ranks the test triplets filtered by train + valid + test
(``additional_filter_triples``), both sides, and reports realistic, optimistic and pessimistic
MRR and Hits@k. kgclip's test ranks the same tensor through ``link_prediction`` and
``filtered_ranks`` and must match to 1e-6.
"""

import json
from pathlib import Path

import torch
from pykeen.evaluation import RankBasedEvaluator
from pykeen.models.mocks import FixedModel
from pykeen.triples import CoreTriplesFactory
from pykeen.version import get_version

N_ENTITIES, N_RELATIONS, N_TRIPLETS = 12, 3, 40
g = torch.Generator().manual_seed(11)
S = torch.randint(0, 25, (N_ENTITIES, N_RELATIONS, N_ENTITIES), generator=g)  # integer scores: exact ties
triplets = torch.unique(torch.stack([torch.randint(0, N_ENTITIES, (N_TRIPLETS,), generator=g), torch.randint(0, N_RELATIONS, (N_TRIPLETS,), generator=g),
                                     torch.randint(0, N_ENTITIES, (N_TRIPLETS,), generator=g)], dim=1), dim=0)
split = torch.randint(0, 10, (len(triplets),), generator=g)  # 0-5 train, 6 valid, 7-9 test
names = ["train" if s < 6 else "valid" if s == 6 else "test" for s in split.tolist()]
test = triplets[split >= 7]
known = triplets[split < 7]


class TensorModel(FixedModel):
    def _generate_fake_scores(self, h, r, t):
        return S[h, r, t].float().requires_grad_(True)


factory = CoreTriplesFactory.create(mapped_triples=known, num_entities=N_ENTITIES, num_relations=N_RELATIONS)
model = TensorModel(triples_factory=factory)
result = RankBasedEvaluator(filtered=True).evaluate(model, mapped_triples=test, additional_filter_triples=[known], batch_size=4, use_tqdm=False)
reference = {}
for side in ("head", "tail", "both"):
    for kind in ("realistic", "optimistic", "pessimistic"):
        reference[f"{side}.{kind}.mrr"] = result.get_metric(f"{side}.{kind}.inverse_harmonic_mean_rank")
        for k in (1, 3, 10):
            reference[f"{side}.{kind}.hits@{k}"] = result.get_metric(f"{side}.{kind}.hits_at_{k}")
out = {
    "made_by": f"tests/kgclip/evaluation/data/make_pykeen_reference.py with pykeen {get_version()}, torch {torch.__version__}",
    "scores": S.tolist(),
    "triplets": [[*map(int, t), n] for t, n in zip(triplets.tolist(), names, strict=True)],
    "reference": reference,
}
(Path(__file__).parent / "pykeen_reference.json").write_text(json.dumps(out, indent=None) + "\n")
print(json.dumps(reference, indent=1))
