"""What the synthetic data set is made of: sizes, accounts, formulas, names, time units."""

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal

DEFAULTS = {"lots": 20_000, "batches": 100_000, "sessions": 500_000, "patients": 100_000}
SCALE_PASSWORD = "scale-bench-2026"
SCALE_USERS = [
    ("scale.pharmacist1", "Dr Sam Scale", "pharmacist"),
    ("scale.pharmacist2", "Dr Kim Scale", "pharmacist"),
    ("scale.technician", "Toni Scale", "technician"),
    ("scale.practitioner1", "Dr Ana Scale", "practitioner"),
    ("scale.practitioner2", "Dr Ben Scale", "practitioner"),
    ("scale.practitioner3", "Dr Cleo Scale", "practitioner"),
]
# The lot feeding many batches that the benchmarks trace; its supplier lot number says so.
TRACE_LOT_PREFIX = "SCALE-TRACE-"
TRACE_INGREDIENT = "Sodium chloride 0.9 %"
TRACE_BATCHES, TRACE_USES_PER_BATCH = 1_000, 50
YEARS = 3
_INSTRUCTIONS = ("1. Work in the ISO 5 hood. 2. Scan every component lot. 3. Measure each component per unit. "
                 "4. Mix gently, inspect, seal and label. (Synthetic formula for benchmarks.)")
# code, name, indication, route, unit volume mL, storage, BUD category, [(ingredient, mL per unit)], areas
SCALE_FORMULAS = [
    ("SCALE-LIPO", "Scale lipolytic PC/DC 10 mL", "fat_reduction", "subcutaneous", 10, "fridge",
     "category_2_aseptic_sterility_tested",
     [("Phosphatidylcholine", "5"), ("Sodium deoxycholate", "2.5"), ("Sodium chloride 0.9 %", "2.5")],
     ("abdomen", "flanks", "submental", "thighs")),
    ("SCALE-LIPO-LD", "Scale lipolytic with lidocaine 10 mL", "fat_reduction", "subcutaneous", 10, "fridge",
     "category_3_aseptic_tested",
     [("Phosphatidylcholine", "4"), ("Sodium deoxycholate", "2"), ("Lidocaine", "1"),
      ("Sodium chloride 0.9 %", "3")],
     ("abdomen", "flanks", "arms")),
    ("SCALE-MESO", "Scale mesolift vitamin C + HA 5 mL", "skin_rejuvenation", "intradermal", 5, "fridge",
     "category_2_terminal",
     [("Ascorbic acid (vitamin C)", "1"), ("Hyaluronic acid", "2"), ("Lidocaine", "0.5"),
      ("Sodium chloride 0.9 %", "1.5")],
     ("face", "neck", "décolleté", "hands")),
    ("SCALE-HAIR", "Scale hair mix minoxidil + biotin 5 mL", "hair_loss", "intradermal", 5, "room",
     "category_2_terminal_sterility_tested",
     [("Minoxidil", "2"), ("Biotin", "1"), ("Sodium chloride 0.9 %", "2")],
     ("scalp, vertex", "scalp, crown", "scalp, temples")),
]
FORMULA_WEIGHTS = (0.35, 0.15, 0.3, 0.2)
# The multiple-dose formulas: in-use period after first puncture (hours), antimicrobial evidence.
# The others are single-dose (one patient, one session, the remainder written off).
SCALE_MULTIPLE_DOSE = {
    "SCALE-MESO": (168, "USP <51> antimicrobial effectiveness test, report AET-SCALE-MESO (synthetic)"),
    "SCALE-HAIR": (672, "USP <51> antimicrobial effectiveness test, report AET-SCALE-HAIR (synthetic)"),
}
FIRST_NAMES = ("Maria", "Aisha", "Laura", "Chen", "Sophie", "James", "Olivia", "Noah", "Emma", "Liam", "Mia",
               "Lucas", "Zara", "Omar", "Ines", "Hugo", "Yara", "Ravi", "Elena", "Tomas")
LAST_NAMES = ("Gomez", "Rahman", "Bianchi", "Wei", "Martin", "O'Neill", "Smith", "Kowalski", "Haddad", "Costa",
              "Novak", "Dubois", "Silva", "Jensen", "Moreau", "Ivanova", "Okafor", "Tanaka", "Rossi", "Byrne")
EVENT_TYPES = ("redness", "swelling", "bruising", "pain", "nodule", "infection", "allergic_reaction", "necrosis",
               "abscess", "granuloma")
EVENT_WEIGHTS = (0.29, 0.25, 0.2, 0.12, 0.08, 0.02, 0.02, 0.01, 0.005, 0.005)
# A chain: site MAIN (the hub, compounding the most) and S002, S003..., named after a city, in its zone.
SITE_CITIES = (
    ("Lyon", "Europe/Paris"), ("Milano", "Europe/Rome"), ("Madrid", "Europe/Madrid"),
    ("Ciudad de México", "America/Mexico_City"), ("Marseille", "Europe/Paris"), ("Roma", "Europe/Rome"),
    ("Barcelona", "Europe/Madrid"), ("Bogotá", "America/Bogota"), ("Bordeaux", "Europe/Paris"),
    ("Torino", "Europe/Rome"), ("Sevilla", "Europe/Madrid"), ("Buenos Aires", "America/Argentina/Buenos_Aires"),
    ("Nantes", "Europe/Paris"), ("Napoli", "Europe/Rome"), ("Valencia", "Europe/Madrid"),
    ("Santiago", "America/Santiago"), ("Lille", "Europe/Paris"), ("Bologna", "Europe/Rome"),
    ("Bilbao", "Europe/Madrid"), ("Lima", "America/Lima"), ("Toulouse", "Europe/Paris"),
    ("Firenze", "Europe/Rome"), ("Málaga", "Europe/Madrid"), ("Medellín", "America/Bogota"),
    ("Nice", "Europe/Paris"),
)
HUB_SHARE = 0.3  # of the chain's lots, batches and sessions at MAIN; the other sites share the rest, unevenly


def site_weights(sites: int):
    """Each site's share of the work: the hub HUB_SHARE, the others decreasing (1/rank^0.7)."""
    if sites <= 1:
        return [1.0]
    others = [1 / rank ** 0.7 for rank in range(1, sites)]
    total = sum(others)
    return [HUB_SHARE] + [(1 - HUB_SHARE) * w / total for w in others]


EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
HOUR, DAY = 3600, 86400


class ForeignData(Exception):
    """The database holds records that seed-demo or seed-scale did not make."""


@dataclass
class Size:
    lots: int
    batches: int
    sessions: int
    patients: int
    seed: int = 1
    sites: int = 1

    @classmethod
    def from_options(cls, scale: float = 1.0, seed: int = 1, sites: int = 1, **given) -> "Size":
        values = {k: given[k] if given.get(k) is not None else max(1, round(v * scale)) for k, v in DEFAULTS.items()}
        return cls(seed=seed, sites=sites, **values)


@dataclass
class Summary:
    counts: dict = field(default_factory=dict)
    timings: list = field(default_factory=list)
    trace_lot: tuple | None = None  # (id, code, batches, uses)


def moment(seconds) -> datetime:
    return EPOCH + timedelta(seconds=int(seconds))


def dec(value, places: int) -> Decimal:
    return Decimal(int(value)).scaleb(-places)
