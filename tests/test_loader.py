import torch

from classbench.data.loader import DeviceLoader, Normalize
from classbench.data.splits import channel_stats, stratified_holdout
from classbench.data.types import Split


def split(n=64, size=8, classes=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    images = torch.randint(0, 256, (n, 3, size, size), generator=g, dtype=torch.uint8)
    return Split(images, torch.arange(n) % classes)


RAW = Normalize(None, None)


def test_eval_loader_normalises_exactly_and_covers_split():
    s = split()
    mean, std = channel_stats(s.images)
    loader = DeviceLoader(s, 24, train=False, normalize=Normalize(mean, std))
    xs, ys = zip(*loader)
    x = torch.cat(xs)
    expect = (s.images.double() / 255 - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1)
    assert torch.allclose(x.double(), expect, atol=1e-5)
    assert torch.equal(torch.cat(ys), s.labels)
    assert [len(y) for y in ys] == [24, 24, 16]


def test_train_batches_shapes_and_drop_last():
    loader = DeviceLoader(split(n=70), 16, train=True, normalize=RAW, pad=2, flip=True)
    batches = list(loader)
    assert len(batches) == len(loader) == 4
    for x, y in batches:
        assert x.shape == (16, 3, 8, 8) and x.dtype == torch.float32 and y.shape == (16,)


def _find(s, x_img):
    """Which (index, dy, dx, flipped) of the padded split reproduces this crop."""
    img = (x_img * 255).round().to(torch.uint8)
    padded = torch.nn.functional.pad(s.images, (2, 2, 2, 2))
    hits = []
    for i in range(len(s)):
        for dy in range(5):
            for dx in range(5):
                win = padded[i, :, dy:dy + 8, dx:dx + 8]
                if torch.equal(win, img):
                    hits.append((i, dy, dx, False))
                if torch.equal(win.flip(-1), img):
                    hits.append((i, dy, dx, True))
    return hits


def test_crop_range_and_flip_are_true_crops_of_the_padded_image():
    s = split(n=16)
    loader = DeviceLoader(s, 16, train=True, normalize=RAW, pad=2, flip=True, seed=3)
    x, y = next(iter(loader))
    flips = 0
    for b in range(16):
        hits = _find(s, x[b])
        assert hits, "each image must be a pad-crop (maybe flipped) of a training image"
        assert any(s.labels[i] == y[b] for i, *_ in hits)
        flips += any(h[3] for h in hits) and not any(not h[3] for h in hits)
    assert 0 < flips < 16  # some flipped, some not


def test_flip_only_mirrors_columns():
    s = split(n=32)
    loader = DeviceLoader(s, 32, train=True, normalize=RAW, pad=0, flip=True, seed=1)
    x, y = next(iter(loader))
    img = (x * 255).round().to(torch.uint8)
    for b in range(32):
        match = (s.images == img[b]).flatten(1).all(1) | (s.images.flip(-1) == img[b]).flatten(1).all(1)
        assert match.any()


def test_same_seed_same_batches_other_seed_other_batches():
    a = [x for x, _ in DeviceLoader(split(), 16, train=True, normalize=RAW, pad=2, flip=True, seed=5)]
    b = [x for x, _ in DeviceLoader(split(), 16, train=True, normalize=RAW, pad=2, flip=True, seed=5)]
    c = [x for x, _ in DeviceLoader(split(), 16, train=True, normalize=RAW, pad=2, flip=True, seed=6)]
    assert all(torch.equal(p, q) for p, q in zip(a, b))
    assert not all(torch.equal(p, q) for p, q in zip(a, c))


def test_state_dict_resumes_mid_epoch_exactly():
    make = lambda: DeviceLoader(split(), 8, train=True, normalize=RAW, pad=2, flip=True, seed=2)  # noqa: E731
    ref = make()
    stream = ref.batches()
    expected = [next(stream)[0] for _ in range(20)]  # crosses two epoch boundaries (8 batches an epoch)
    run = make()
    stream = run.batches()
    got = [next(stream)[0] for _ in range(11)]
    state = run.state_dict()
    resumed = make()
    resumed.load_state_dict(state)
    stream = resumed.batches()
    got += [next(stream)[0] for _ in range(9)]
    assert all(torch.equal(p, q) for p, q in zip(expected, got))


def test_ranks_take_disjoint_shards_of_the_global_batch():
    s = split(n=64)
    s = Split(s.images, torch.arange(64))  # labels that name the image: a batch's labels say which images it holds
    single = DeviceLoader(s, 16, train=True, normalize=RAW, seed=4).batches()
    ranks = [DeviceLoader(s, 16, train=True, normalize=RAW, seed=4, rank=r, world_size=2).batches() for r in range(2)]
    seen = []
    for _ in range(4):  # a whole epoch: 4 global batches of 16
        whole = next(single)[1]
        parts = [next(r)[1] for r in ranks]
        assert [len(p) for p in parts] == [8, 8]
        assert set(parts[0].tolist()).isdisjoint(parts[1].tolist())
        assert torch.equal(torch.cat(parts), whole)  # together, exactly the single-process batch
        seen += whole.tolist()
    assert sorted(seen) == list(range(64))  # and the epoch covers every image once


def test_eval_shards_cover_split_once():
    s = split(n=37)
    seen = torch.cat([y for r in range(3) for _, y in DeviceLoader(
        Split(s.images, torch.arange(37)), 5, train=False, normalize=RAW, rank=r, world_size=3)])
    assert sorted(seen.tolist()) == list(range(37))


def test_stratified_holdout_is_exact_balanced_and_seeded():
    labels = torch.arange(1000) % 10
    keep, held = stratified_holdout(labels, 100, seed=0)
    assert len(held) == 100 and len(keep) == 900
    assert torch.bincount(labels[held]).tolist() == [10] * 10
    assert set(keep.tolist()).isdisjoint(held.tolist())
    assert torch.equal(held, stratified_holdout(labels, 100, seed=0)[1])
    assert not torch.equal(held, stratified_holdout(labels, 100, seed=1)[1])
