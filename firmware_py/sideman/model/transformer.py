"""The jazz-piano transformer: one backbone step per musical event, two voices in one stream.

A pure network (nanoGPT-shaped: config, attention, MLP, block, model). No session state lives here:
the KV cache goes in and comes out of `step`, so the live voice can roll back by keeping an old cache,
and the same function exports to a static-shape ONNX/TensorRT graph.

Sequence layout. Position t predicts event t. Its input is the *previous* event (a learned
beginning vector at t = 0) plus what the listener knows when event t is decided:

    x_t = embed(event t-1: time, pitch, duration, velocity bins and its voice)
          + style (blend weights @ style table) + mode + chord(12 pitch classes)
          + pulse (tempo, and where event t-1 fell in the beat) + position t

The backbone output h_t then goes through small heads, one field after another, each head also
seeing the fields already chosen (same order as the Markov voice, so bits compare factor by factor):

    time | h_t, voice_t  →  pitch | …, time  →  duration | …, pitch  →  velocity | …, duration

Pedal tokens (128 down, 129 up) fix duration and velocity at bin 0, so those two factors are not
scored for pedal events (they cost no bits), exactly as in the Markov voice.

The heads see whose event comes next (voice_t). Asked for the human's voice, the time head is the
model's guess of when the player plays again: `human_time_logits` in `step`.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from sideman.model.conditioning import PULSE_DIM
from sideman.model.events import DURATION_BINS_S, PEDAL_DOWN, PITCH_TOKENS, TIME_BINS_S, VELOCITY_BINS

N_TIME, N_PITCH, N_DURATION, N_VELOCITY = len(TIME_BINS_S), PITCH_TOKENS, len(DURATION_BINS_S), VELOCITY_BINS
FIELDS = ("time", "pitch", "duration", "velocity")
CHORD_DIM = 12


@dataclass
class ModelConfig:
    d_model: int = 256
    n_layers: int = 6
    n_heads: int = 4
    d_ff: int = 1024
    context: int = 256          # positions, and the static KV cache's length
    n_styles: int = 16          # rows of the style table (pianists; the last rows may be spare)
    n_modes: int = 4            # conditioning.MODEL_MODES
    head_hidden: int = 256
    dropout: float = 0.1
    pulse_dim: int = PULSE_DIM  # conditioning.pulse_features read (1: the tempo only)

    @classmethod
    def from_dict(cls, values: dict) -> "ModelConfig":
        known = {k: v for k, v in values.items() if k in cls.__dataclass_fields__}
        known.setdefault("pulse_dim", 1)   # configs written before the beat input knew only the tempo
        return cls(**known)

    def to_dict(self) -> dict:
        return asdict(self)


class Attention(nn.Module):
    def __init__(self, config: ModelConfig):
        super().__init__()
        assert config.d_model % config.n_heads == 0
        self.n_heads = config.n_heads
        self.head_dim = config.d_model // config.n_heads
        self.qkv = nn.Linear(config.d_model, 3 * config.d_model)
        self.out = nn.Linear(config.d_model, config.d_model)
        self.dropout = config.dropout

    def _split(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        b, t, _ = x.shape
        q, k, v = self.qkv(x).split(self.n_heads * self.head_dim, dim=2)
        shape = (b, t, self.n_heads, self.head_dim)
        return q.view(shape).transpose(1, 2), k.view(shape).transpose(1, 2), v.view(shape).transpose(1, 2)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Causal attention over the whole sequence; also returns this layer's keys and values."""
        q, k, v = self._split(x)
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True,
                                           dropout_p=self.dropout if self.training else 0.0)
        b, _, t, _ = y.shape
        return self.out(y.transpose(1, 2).reshape(b, t, -1)), k, v

    def step(self, x: torch.Tensor, k_cache: torch.Tensor, v_cache: torch.Tensor, position: torch.Tensor):
        """One position. x (B,1,D); caches (B,H,N,hd); position: int64 scalar tensor.
        Written with plain ops (no in-place writes, no data-dependent shapes) so it exports."""
        q, k, v = self._split(x)
        n = k_cache.shape[2]
        slots = torch.arange(n, device=x.device)
        here = (slots == position).view(1, 1, n, 1)
        k_cache = torch.where(here, k, k_cache)
        v_cache = torch.where(here, v, v_cache)
        scores = (q @ k_cache.transpose(2, 3)) / math.sqrt(self.head_dim)
        visible = (slots <= position).view(1, 1, 1, n)
        scores = scores.masked_fill(~visible, float("-inf"))
        y = torch.softmax(scores, dim=-1) @ v_cache
        b = x.shape[0]
        return self.out(y.transpose(1, 2).reshape(b, 1, -1)), k_cache, v_cache


class Block(nn.Module):
    def __init__(self, config: ModelConfig):
        super().__init__()
        self.norm1 = nn.LayerNorm(config.d_model)
        self.attention = Attention(config)
        self.norm2 = nn.LayerNorm(config.d_model)
        self.mlp = nn.Sequential(nn.Linear(config.d_model, config.d_ff), nn.GELU(),
                                 nn.Linear(config.d_ff, config.d_model), nn.Dropout(config.dropout))

    def forward(self, x):
        y, k, v = self.attention(self.norm1(x))
        x = x + y
        return x + self.mlp(self.norm2(x)), k, v

    def step(self, x, k_cache, v_cache, position):
        y, k_cache, v_cache = self.attention.step(self.norm1(x), k_cache, v_cache, position)
        x = x + y
        return x + self.mlp(self.norm2(x)), k_cache, v_cache


class FieldHead(nn.Module):
    """Logits of one field from the backbone state plus the fields already chosen for this event."""

    def __init__(self, config: ModelConfig, n_out: int, given: tuple[int, ...]):
        super().__init__()
        self.given = nn.ModuleList(nn.Embedding(n, config.d_model) for n in given)
        self.norm = nn.LayerNorm(config.d_model)
        self.mlp = nn.Sequential(nn.Linear(config.d_model, config.head_hidden), nn.GELU(),
                                 nn.Linear(config.head_hidden, n_out))

    def forward(self, state: torch.Tensor, *chosen: torch.Tensor) -> torch.Tensor:
        z = state
        for embedding, value in zip(self.given, chosen):
            z = z + embedding(value)
        return self.mlp(self.norm(z))


class JazzTransformer(nn.Module):
    def __init__(self, config: ModelConfig):
        super().__init__()
        self.config = config
        d = config.d_model
        self.time_in = nn.Embedding(N_TIME, d)
        self.pitch_in = nn.Embedding(N_PITCH, d)
        self.duration_in = nn.Embedding(N_DURATION, d)
        self.velocity_in = nn.Embedding(N_VELOCITY, d)
        self.voice_in = nn.Embedding(2, d)
        self.begin = nn.Parameter(torch.zeros(d))
        self.style_table = nn.Parameter(torch.zeros(config.n_styles, d))
        self.mode_in = nn.Embedding(config.n_modes, d)
        self.chord_in = nn.Linear(CHORD_DIM, d)
        self.pulse_in = nn.Linear(config.pulse_dim, d)
        self.position = nn.Embedding(config.context, d)
        self.drop = nn.Dropout(config.dropout)
        self.blocks = nn.ModuleList(Block(config) for _ in range(config.n_layers))
        self.norm = nn.LayerNorm(d)
        self.voice_out = nn.Embedding(2, d)
        self.time_head = FieldHead(config, N_TIME, ())
        self.pitch_head = FieldHead(config, N_PITCH, (N_TIME,))
        self.duration_head = FieldHead(config, N_DURATION, (N_TIME, N_PITCH))
        self.velocity_head = FieldHead(config, N_VELOCITY, (N_TIME, N_PITCH, N_DURATION))
        self.apply(self._init_weights)
        nn.init.normal_(self.begin, std=0.02)
        nn.init.normal_(self.style_table, std=0.02)

    @staticmethod
    def _init_weights(module):
        if isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, std=0.02)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            nn.init.normal_(module.weight, std=0.02)

    def parameter_count(self) -> int:
        return sum(p.numel() for p in self.parameters())

    # --- inputs -------------------------------------------------------------------------------

    def event_embedding(self, time, pitch, duration, velocity, voice):
        return (self.time_in(time) + self.pitch_in(pitch) + self.duration_in(duration)
                + self.velocity_in(velocity) + self.voice_in(voice))

    def style_vector(self, style_weights: torch.Tensor) -> torch.Tensor:
        """(B,S) blend weights → (B,D): a blend is the weighted sum of the pianists' embeddings.
        The exported step graph takes this vector as an input, so one engine serves every blend
        (and styles fine-tuned later)."""
        return style_weights @ self.style_table

    def conditioning(self, style_weights, mode, chord, pulse, style_vector=None):
        """style_weights (B,S) (or the blended style_vector (B,D) itself), mode (B,), chord (B,T,12),
        pulse (B,T,PULSE_DIM) → (B,T,D)."""
        if style_vector is None:
            style_vector = self.style_vector(style_weights)
        per_sequence = style_vector + self.mode_in(mode)
        return per_sequence[:, None, :] + self.chord_in(chord) + self.pulse_in(pulse[..., :self.config.pulse_dim])

    def load_state_dict(self, state_dict, strict: bool = True, assign: bool = False):
        """Also reads weights saved before the beat input (their `tempo_in` is `pulse_in` of a
        pulse_dim-1 model)."""
        state_dict = {("pulse_in" + k[len("tempo_in"):] if k.startswith("tempo_in.") else k): v
                      for k, v in state_dict.items()}
        return super().load_state_dict(state_dict, strict=strict, assign=assign)

    # --- whole sequences (training, scoring, prefill) ----------------------------------------

    def forward(self, batch: dict, return_cache: bool = False):
        """batch: time/pitch/duration/velocity/voice (B,T) int64, chord (B,T,12), pulse (B,T,PULSE_DIM),
        mode (B,), style_weights (B,S) or style_vector (B,D). Returns the backbone states (B,T,D)
        [and the KV caches]."""
        b, t = batch["time"].shape
        previous = self.event_embedding(batch["time"], batch["pitch"], batch["duration"],
                                        batch["velocity"], batch["voice"])[:, :-1]
        x = torch.cat([self.begin.expand(b, 1, -1), previous], dim=1)
        x = x + self.conditioning(batch.get("style_weights"), batch["mode"], batch["chord"], batch["pulse"],
                                  batch.get("style_vector"))
        x = self.drop(x + self.position(torch.arange(t, device=x.device)))
        keys, values = [], []
        for block in self.blocks:
            x, k, v = block(x)
            keys.append(k)
            values.append(v)
        h = self.norm(x)
        if return_cache:
            return h, torch.stack(keys), torch.stack(values)
        return h

    def field_logits(self, h, voice, time, pitch, duration) -> dict[str, torch.Tensor]:
        """Teacher-forced logits of every field (training, scoring)."""
        state = h + self.voice_out(voice)
        return {"time": self.time_head(state),
                "pitch": self.pitch_head(state, time),
                "duration": self.duration_head(state, time, pitch),
                "velocity": self.velocity_head(state, time, pitch, duration)}

    def event_nats(self, batch: dict) -> torch.Tensor:
        """−log P of each event (B,T) in nats, teacher forced; pedal events score only time and pitch."""
        h = self(batch)
        logits = self.field_logits(h, batch["voice"], batch["time"], batch["pitch"], batch["duration"])
        nats = 0.0
        is_note = batch["pitch"] < PEDAL_DOWN
        for field in FIELDS:
            lp = F.cross_entropy(logits[field].transpose(1, 2).float(), batch[field], reduction="none")
            nats = nats + (lp if field in ("time", "pitch") else lp * is_note)
        return nats

    # --- one event at a time (live, export) --------------------------------------------------

    def empty_cache(self, batch_size: int = 1, dtype=torch.float32, device=None):
        c = self.config
        shape = (c.n_layers, batch_size, c.n_heads, c.context, c.d_model // c.n_heads)
        return torch.zeros(shape, dtype=dtype, device=device), torch.zeros(shape, dtype=dtype, device=device)

    def step(self, previous: torch.Tensor, begin: torch.Tensor, style_vector, mode, chord, pulse,
             position: torch.Tensor, k_cache: torch.Tensor, v_cache: torch.Tensor):
        """One backbone step. previous (B,5) int64: time, pitch, duration, velocity, voice of the
        previous event; begin (B,) float: 1.0 at the start of a sequence (previous is ignored);
        style_vector (B,D) from style_vector(); chord (B,12); pulse (B,PULSE_DIM); position: int64
        scalar tensor; caches (L,B,H,N,hd).
        Returns h (B,D) and the new caches. Same numbers as forward() at that position."""
        e = self.event_embedding(previous[:, 0], previous[:, 1], previous[:, 2], previous[:, 3], previous[:, 4])
        gate = begin[:, None]
        x = gate * self.begin + (1.0 - gate) * e
        x = x + (style_vector + self.mode_in(mode)
                 + self.chord_in(chord) + self.pulse_in(pulse[:, :self.config.pulse_dim]))
        x = (x + self.position(position))[:, None, :]
        new_k, new_v = [], []
        for i, block in enumerate(self.blocks):
            x, k, v = block.step(x, k_cache[i], v_cache[i], position)
            new_k.append(k)
            new_v.append(v)
        return self.norm(x)[:, 0], torch.stack(new_k), torch.stack(new_v)

    def next_time_logits(self, h: torch.Tensor, voice: int) -> torch.Tensor:
        """Time-gap logits (B,N_TIME) of the next event if it is `voice`'s (AI: what the AI plays;
        HUMAN: when the player is likely to play again)."""
        voice_ids = torch.full(h.shape[:-1], voice, dtype=torch.long, device=h.device)
        return self.time_head(h + self.voice_out(voice_ids))
