"""The equipment list as a workbook: what the filtered list shows, every page, with each piece's state."""

from ..models.equipment import EQUIPMENT_KIND_TEXT
from ..queries.equipment import EQUIPMENT_STATES, state_of
from ..services.clock import clinic_today
from . import records
from .writer import Column, WorkbookSummary, WorkbookWriter, zone_label


def equipment_list_workbook(out, query) -> WorkbookSummary:
    """The equipment `query` finds (queries.equipment.equipment_list_query), one row each."""
    book = WorkbookWriter()
    names, sites, today = records.user_names(), records.site_codes(), clinic_today()
    columns = [Column("Code", "code"), Column("Kind"), Column("Name"), Column("Serial number", "code"),
               Column("Site", "code"), Column("Due", "date"), Column(f"State on {today.isoformat()}"),
               Column("In use", "bool"), Column("Out of service", "bool"),
               Column(zone_label("Registered", book.zone), "datetime"), Column("Registered by")]
    book.table("Equipment", columns, (
        (item.code, EQUIPMENT_KIND_TEXT[item.kind], item.name, item.serial_number, sites.get(item.site_id),
         item.due_on, EQUIPMENT_STATES[state_of(item, today)], item.active, item.out_of_service, item.created_at,
         names.get(item.created_by_id, "the operator") if item.created_by_id else "the operator")
        for item in records.stream_scalars(query)))
    book.save(out)
    return WorkbookSummary(book.parts)
