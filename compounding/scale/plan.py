"""The plan: every row decided in memory with numpy, the rules holding by construction."""

from collections import defaultdict
from datetime import UTC, datetime, timedelta

import numpy as np

from ..services.clock import clinic_today
from .reference import Refs
from .spec import (
    DAY,
    EPOCH,
    FORMULA_WEIGHTS,
    HOUR,
    TRACE_BATCHES,
    TRACE_INGREDIENT,
    TRACE_USES_PER_BATCH,
    YEARS,
    Size,
    site_weights,
)


class Plan:
    """The synthetic data set as numpy arrays (times in seconds since the epoch, quantities as integers)."""

    def __init__(self, size: Size, refs: Refs, now: datetime):
        self.size, self.refs, self.rng = size, refs, np.random.default_rng(size.seed)
        self.now = int(now.timestamp())
        self.start = self.now - YEARS * 365 * DAY
        self.today = clinic_today(now)
        # Where things happen draws from a generator of its own: one site (MAIN) gives the same data as before sites.
        self.sites, self.site_rng = max(1, size.sites), np.random.default_rng([size.seed, 18])
        self.site_weight = np.array(site_weights(self.sites))
        self._batches()
        self._lots()
        self._uses()
        self._vials_and_statuses()
        self._consumption()

    def _batches(self) -> None:
        rng, n = self.rng, self.size.batches
        self.b_time = np.sort(rng.integers(self.start + DAY, self.now - 600, size=n))
        weights = np.array(FORMULA_WEIGHTS[:len(self.refs.formulas)], dtype=float)
        self.b_formula = rng.choice(len(self.refs.formulas), size=n, p=weights / weights.sum())
        self.b_by_pharmacist = rng.random(n) < 0.4  # else the technician compounded it
        self.b_verified = self.b_time + rng.integers(20 * 60, 120 * 60, size=n)
        bud_seconds = np.array([f.bud_seconds for f in self.refs.formulas])
        self.b_bud = self.b_time + bud_seconds[self.b_formula]
        # Recent batches still await verification; about 1 % were rejected by the verifier.
        self.b_prepared = (self.b_verified > self.now) | (self.b_time > self.now - 12 * HOUR)
        self.b_rejected = ~self.b_prepared & (rng.random(n) < 0.01)
        self.b_eligible = ~self.b_prepared & ~self.b_rejected
        self.w_start = self.b_verified + 300
        self.w_end = np.minimum(self.b_bud, self.now) - HOUR
        self.b_eligible &= self.w_end > self.w_start
        self.b_site = self._spread(n)

    def _spread(self, n: int) -> np.ndarray:
        """A site index (0 is MAIN, the hub) for each of n things, by the sites' shares."""
        if self.sites == 1:
            return np.zeros(n, dtype=np.int64)
        return self.site_rng.choice(self.sites, p=self.site_weight, size=n).astype(np.int64)

    def _lots(self) -> None:
        """Lots per ingredient over time; each is "current" from its release until the next one's."""
        rng, refs = self.rng, self.refs
        used = defaultdict(int)
        for f in refs.formulas:
            for ingredient_id, _ in f.components:
                used[ingredient_id] += 1
        ingredient_ids = sorted(used)
        trace = 1 if self.size.lots > len(ingredient_ids) else 0
        share = np.array([used[i] for i in ingredient_ids], dtype=float)
        # Each site receives its own lots of every ingredient, in proportion to its share of the work.
        site_lots = np.floor(self.site_weight * (self.size.lots - trace)).astype(int)
        site_lots[0] += self.size.lots - trace - int(site_lots.sum())
        self.l_ingredient, self.l_received, self.l_site = [], [], []
        self.current_lot = {}  # (site, ingredient id) -> (lot index array, effective-from times)
        for site, lots in enumerate(site_lots.tolist()):
            per = np.maximum(1, np.floor(share / share.sum() * lots).astype(int))
            per[int(np.argmax(share))] += max(0, lots - int(per.sum()))
            for ingredient_id, count in zip(ingredient_ids, per, strict=True):
                first = len(self.l_received)
                # Deliveries roughly evenly spaced, so each lot is the current one for a while.
                spacing = (self.now - self.start) / count
                received = np.linspace(self.start - 3 * DAY, self.now - 2 * DAY - spacing, count)
                received = np.sort((received + rng.uniform(0, 0.5, count) * spacing).astype(np.int64))
                received[0] = self.start - 3 * DAY
                self.l_ingredient += [ingredient_id] * count
                self.l_received += received.tolist()
                self.l_site += [site] * count
                self.current_lot[(site, ingredient_id)] = (np.arange(first, first + count), received + 2 * HOUR)
        self.trace_lot = None
        if trace:  # at the hub
            self.trace_lot = len(self.l_received)
            self.l_ingredient.append(refs.ingredients[TRACE_INGREDIENT][0])
            self.l_received.append(self.start + 365 * DAY - DAY)
            self.l_site.append(0)
        self.l_ingredient = np.array(self.l_ingredient)
        self.l_received = np.array(self.l_received, dtype=np.int64)
        self.l_site = np.array(self.l_site, dtype=np.int64)

    def _uses(self) -> None:
        rng, size = self.rng, self.size
        sizes = rng.choice([1, 2, 3], p=[0.3, 0.4, 0.3], size=size.sessions)
        total = int(sizes.sum())
        eligible = np.flatnonzero(self.b_eligible)
        self.trace_batches = np.array([], dtype=int)
        if self.trace_lot is not None and len(eligible):
            t0 = self.l_received[self.trace_lot] + 2 * HOUR
            window = eligible[(self.b_time[eligible] > t0) & (self.b_time[eligible] < t0 + 365 * DAY)
                              & (self.b_site[eligible] == 0)]  # the trace lot is at the hub
            m = min(TRACE_BATCHES, max(1, size.batches // 100), len(window))
            if m:
                self.trace_batches = window[np.linspace(0, len(window) - 1, m).astype(int)]
        per_trace = min(TRACE_USES_PER_BATCH, max(1, total // (4 * max(1, len(self.trace_batches)))))
        others = np.setdiff1d(eligible, self.trace_batches)
        rest = max(0, total - per_trace * len(self.trace_batches))
        u_batch = np.concatenate([np.repeat(self.trace_batches, per_trace),
                                  others[rng.integers(0, len(others), size=rest)] if len(others) else []])
        u_batch = u_batch.astype(np.int64)
        span = self.w_end[u_batch] - self.w_start[u_batch]
        u_time = self.w_start[u_batch] + (rng.random(len(u_batch)) * span).astype(np.int64)
        order = np.argsort(u_time, kind="stable")
        self.u_batch, u_time = u_batch[order], u_time[order]
        self.u_tenths = rng.integers(5, 31, size=len(u_batch))  # 0.5 to 3.0 mL
        self.u_session, self.s_time = self._group_sessions(u_time, sizes)
        if self.sites > 1:  # sessions numbered in time order, and their uses with them
            rank = np.empty(len(self.s_time), dtype=np.int64)
            rank[np.argsort(self.s_time, kind="stable")] = np.arange(len(self.s_time))
            self.s_time = np.sort(self.s_time, kind="stable")
            self.u_session = rank[self.u_session]
            order = np.argsort(self.u_session, kind="stable")
            self.u_batch, self.u_tenths, self.u_session = self.u_batch[order], self.u_tenths[order], \
                self.u_session[order]
        self.u_time = self.s_time[self.u_session]  # each use happens at its session's time
        self.s_site = self.b_site[self.u_batch[np.searchsorted(self.u_session, np.arange(len(self.s_time)))]]

    def _group_sessions(self, u_time, sizes):
        """Consecutive uses at one site make a session of 1 to 3 uses, at the time of its last use.

        A use joins its site's open session only if that time is still inside the window of every
        batch already in it and its batch is not already in it; otherwise a new session opens.
        Sessions are numbered as they open (in time order with one site).
        """
        w_end, batches, b_site = self.w_end.tolist(), self.u_batch.tolist(), self.b_site.tolist()
        u_session, s_time = [0] * len(batches), []
        target_sizes = sizes.tolist() + self.rng.choice([1, 2, 3], size=len(batches) + 1).tolist()
        opened = {}  # site -> [session, count, limit, members, last time]
        for k, t in enumerate(u_time.tolist()):
            b = batches[k]
            state = opened.get(b_site[b])
            if state is None or state[1] >= target_sizes[state[0]] or t > state[2] or b in state[3]:
                if state is not None:
                    s_time[state[0]] = state[4]
                state = opened[b_site[b]] = [len(s_time), 0, w_end[b], set(), t]
                s_time.append(t)
            u_session[k] = state[0]
            state[1], state[2], state[4] = state[1] + 1, min(state[2], w_end[b]), t
            state[3].add(b)
        for state in opened.values():
            s_time[state[0]] = state[4]
        return np.array(u_session, dtype=np.int64), np.array(s_time, dtype=np.int64)

    def _vials_and_statuses(self) -> None:
        """Which vial each use draws from, how many units each batch has, and where each vial ends.

        Single-dose: each use has a vial of its own (a batch is in a session at most once), spent
        when its session is saved, its remainder written off. Multiple-dose: the first use
        punctures a vial; later sessions draw from it while its in-use period lasts and it holds
        the volume (when it does not, the previous use took what was left); a vial whose in-use
        period ended before its batch's BUD has its remainder written off then.
        """
        rng, n, formulas = self.rng, self.size.batches, self.refs.formulas
        unit = np.array([f.unit_tenths for f in formulas])[self.b_formula]
        multiple = np.array([f.dose == "multiple" for f in formulas])[self.b_formula]
        in_use = np.array([(f.in_use_hours or 0) * HOUR for f in formulas])[self.b_formula]
        self.b_unit, self.b_multiple = unit, multiple
        u_batch, n_uses = self.u_batch, len(self.u_batch)
        u_multiple = multiple[u_batch]
        # A single-dose vial is sized for one treatment: a use takes all of it, or half or more.
        single = np.flatnonzero(~u_multiple)
        whole = rng.random(len(single)) < 0.6
        part = (unit[u_batch[single]] * rng.uniform(0.5, 1.0, len(single))).astype(np.int64)
        self.u_tenths[single] = np.where(whole, unit[u_batch[single]], np.maximum(part, 5))
        extra = rng.choice([0, 1, 2], p=[0.45, 0.35, 0.2], size=n)
        finish = rng.random(n) < 0.7
        # Single-dose: the k-th use of a batch (in time order) takes its vial k.
        by_batch = np.lexsort((np.arange(n_uses), u_batch))
        group_first = np.searchsorted(u_batch[by_batch], u_batch[by_batch])
        self.u_number = np.empty(n_uses, dtype=np.int64)
        self.u_number[by_batch] = np.arange(n_uses) - group_first + 1
        opened = self._multiple_dose_uses(np.flatnonzero(u_multiple), unit, in_use, extra, finish)
        used_vials = np.zeros(n, dtype=np.int64)
        np.maximum.at(used_vials, u_batch, self.u_number)
        self.b_units = np.where(used_vials > 0, used_vials + extra, rng.integers(1, 5, size=n))
        self.b_total = self.b_units * unit
        self._vials(unit, opened)

    def _multiple_dose_uses(self, uses, unit, in_use, extra, finish) -> dict:
        """Multiple-dose uses in time order, each given its vial: {(batch, number): [punctured, first
        use, remaining, spent at, written off at]} of every vial punctured."""
        batches, times, tenths = self.u_batch.tolist(), self.u_time.tolist(), self.u_tenths
        unit_, in_use_, bud = unit.tolist(), in_use.tolist(), self.b_bud.tolist()
        opened, current, count = {}, {}, defaultdict(int)
        for k in uses.tolist():
            b, t, volume = batches[k], times[k], int(tenths[k])
            cur = current.get(b)  # [number, own deadline, last use]
            if cur is not None:
                vial = opened[(b, cur[0])]
                if t >= cur[1]:  # its in-use period ended before this session
                    vial[4] = cur[1]
                    cur = None
                elif vial[2] < volume:  # too little left: the previous use took the rest
                    tenths[cur[2]] += vial[2]
                    vial[2], vial[3] = 0, times[cur[2]]
                    cur = None
            if cur is None:
                count[b] += 1
                cur = [count[b], min(t + in_use_[b], bud[b]), k]
                opened[(b, cur[0])] = [t, k, unit_[b], None, None]
            vial = opened[(b, cur[0])]
            vial[2] -= volume
            cur[2] = k
            self.u_number[k] = cur[0]
            if vial[2] == 0:
                vial[3] = t
                cur = None
            current[b] = cur
        for b, cur in current.items():
            if cur is None:
                continue
            vial = opened[(b, cur[0])]
            if extra[b] == 0 and finish[b]:  # used up: the last use took what was left
                tenths[cur[2]] += vial[2]
                vial[2], vial[3] = 0, times[cur[2]]
            elif cur[1] < bud[b] and cur[1] < self.now - 60:
                vial[4] = cur[1]
        return opened

    def _vials(self, unit, opened: dict) -> None:
        """Every vial's end state, the write-offs (vial by vial), each batch's remaining volume and status."""
        rng, n = self.rng, self.size.batches
        self.v_first = np.concatenate([[0], np.cumsum(self.b_units)])[:-1]
        total = int(self.b_units.sum())
        self.v_batch = np.repeat(np.arange(n), self.b_units)
        self.v_number = np.arange(total) - self.v_first[self.v_batch] + 1
        self.v_remaining = unit[self.v_batch].copy()
        self.v_status = np.full(total, "sealed", dtype=object)
        self.v_punctured = np.full(total, -1, dtype=np.int64)
        self.v_first_use = np.full(total, -1, dtype=np.int64)
        self.v_spent = np.full(total, -1, dtype=np.int64)
        # Write-offs: (vial, time, tenths, why: 0 single-dose remainder, 1 in-use period ended,
        # 2 batch discarded, 3 batch rejected, use for why 0 else -1)
        offs = []
        single = np.flatnonzero(~self.b_multiple[self.u_batch])
        vial = self.v_first[self.u_batch[single]] + self.u_number[single] - 1
        left = unit[self.u_batch[single]] - self.u_tenths[single]
        self.v_status[vial] = "spent"
        self.v_remaining[vial] = 0
        self.v_punctured[vial] = self.v_spent[vial] = self.u_time[single]
        self.v_first_use[vial] = single
        wasted = left > 0
        offs.append((vial[wasted], self.u_time[single][wasted], left[wasted], 0, single[wasted]))
        keys = list(opened)
        states = np.array([v if v is not None else -1 for state in opened.values() for v in state],
                          dtype=np.int64).reshape(-1, 5)  # punctured, first use, remaining, spent at, written off at
        vial = self.v_first[np.array([b for b, _ in keys], dtype=np.int64)] + np.array(
            [number for _, number in keys], dtype=np.int64) - 1
        self.v_punctured[vial], self.v_first_use[vial] = states[:, 0], states[:, 1]
        self.v_remaining[vial] = states[:, 2]
        spent, off = states[:, 3] >= 0, (states[:, 3] < 0) & (states[:, 4] >= 0)
        self.v_status[vial] = np.where(spent, "spent", np.where(off, "discarded", "open"))
        self.v_spent[vial[spent]] = states[spent, 3]
        ended = np.column_stack([vial[off], states[off, 4], states[off, 2]])
        offs.append((ended[:, 0], ended[:, 1], ended[:, 2], 1, np.full(len(ended), -1)))
        self.v_remaining[ended[:, 0]] = 0
        self.b_remaining = np.bincount(self.v_batch, weights=self.v_remaining, minlength=n).astype(np.int64)
        discard = self.b_eligible & (self.b_remaining > 0) & (self.b_bud < self.now - DAY) & (rng.random(n) < 0.2)
        self.b_status = np.where(self.b_prepared, "prepared", np.where(self.b_rejected, "rejected", np.where(
            self.b_remaining == 0, "depleted", np.where(discard, "discarded", "released"))))
        self.b_discard_time = np.minimum(self.b_bud + 2 * HOUR, self.now - 60)
        # A discarded or rejected batch's vials are discarded, each one's remainder written off.
        for status, why, when in (("discarded", 2, self.b_discard_time), ("rejected", 3, self.b_verified)):
            vials = np.flatnonzero((self.b_status[self.v_batch] == status) & (self.v_remaining > 0))
            offs.append((vials, when[self.v_batch[vials]], self.v_remaining[vials], why, np.full(len(vials), -1)))
            self.v_status[vials] = "discarded"
            self.v_remaining[vials] = 0
        self.b_final = np.bincount(self.v_batch, weights=self.v_remaining, minlength=n).astype(np.int64)
        self.w_vial = np.concatenate([o[0] for o in offs]).astype(np.int64)
        self.w_time = np.concatenate([o[1] for o in offs]).astype(np.int64)
        self.w_tenths = np.concatenate([o[2] for o in offs]).astype(np.int64)
        self.w_why = np.concatenate([np.full(len(o[0]), o[3]) for o in offs]).astype(np.int64)
        self.w_use = np.concatenate([o[4] for o in offs]).astype(np.int64)
        self.u_vial = self.v_first[self.u_batch] + self.u_number - 1

    def _consumption(self) -> None:
        """Which lot each batch component takes, how much; what each lot received and has left."""
        rows_batch, rows_lot, rows_qty = [], [], []
        trace = np.zeros(self.size.batches, dtype=bool)
        trace[self.trace_batches] = True
        trace_ingredient = self.l_ingredient[self.trace_lot] if self.trace_lot is not None else -1
        for fi, formula in enumerate(self.refs.formulas):
            members = np.flatnonzero(self.b_formula == fi)
            for ingredient_id, per_unit in formula.components:
                for site in range(self.sites):  # a batch takes the lots of its own site
                    here = members[self.b_site[members] == site] if self.sites > 1 else members
                    lots, effective = self.current_lot[(site, ingredient_id)]
                    lot = lots[np.maximum(0, np.searchsorted(effective, self.b_time[here], side="right") - 1)]
                    if ingredient_id == trace_ingredient:
                        lot = np.where(trace[here], self.trace_lot, lot)
                    rows_batch.append(here)
                    rows_lot.append(lot)
                    rows_qty.append(self.b_units[here] * per_unit)
        batch = np.concatenate(rows_batch)
        order = np.lexsort((batch,))  # components of a batch together, in formula order
        self.c_batch, self.c_lot = batch[order], np.concatenate(rows_lot)[order]
        self.c_qty = np.concatenate(rows_qty)[order]
        n_lots = len(self.l_received)
        consumed = np.bincount(self.c_lot, weights=self.c_qty, minlength=n_lots).astype(np.int64)
        last_use = np.full(n_lots, 0, dtype=np.int64)
        np.maximum.at(last_use, self.c_lot, self.b_time[self.c_batch])
        expiry_seconds = np.maximum(self.l_received + 730 * DAY, last_use + 180 * DAY)
        self.l_expires = [(EPOCH + timedelta(seconds=int(s))).date() for s in expiry_seconds]
        expired = np.array([d < self.today for d in self.l_expires])
        newest = np.zeros(n_lots, dtype=bool)
        for lots, _ in self.current_lot.values():
            newest[lots[-3:]] = True
        # Stock is left in the newest lots (and in any lot no batch took from); the rest were used up.
        leftover = np.where(newest, np.maximum(consumed // 3, 50_000) + 200_000, 0)
        leftover = np.where(consumed == 0, np.maximum(leftover, 50_000), leftover)
        self.l_quantity = consumed + leftover
        self.l_waste = np.where(expired & (leftover > 0), leftover, 0)  # written off once expired
        self.l_remaining = leftover - self.l_waste
        self.l_consumed = consumed
        self.l_status = np.where(self.l_remaining > 0, "released", "depleted")
        self.l_waste_time = np.array([min(self.now - 60, int((datetime.combine(d, datetime.min.time(), UTC)
                                                              - EPOCH).total_seconds()) + 2 * DAY)
                                      for d in self.l_expires])
        self.c_scanned = self.rng.random(len(self.c_batch)) < 0.8
