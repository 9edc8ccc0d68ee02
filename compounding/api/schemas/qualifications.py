"""Qualified people: a result recorded for a person, its void, a person's standings, and the kinds."""

from marshmallow import EXCLUDE, Schema, fields, validate

from ...limits import LABEL_MAX, NAME_MAX, NOTE_MAX, USERNAME_MAX
from ...models.people import QUALIFICATION_RESULTS
from ...queries.people import DUE_WITHIN_MAX
from ...services.qualifications import CFU_MAX
from .common import RECORD_ID, Day, reason_text

STATES = ("valid", "due_soon", "lapsed", "failed", "initial", "missing")
_KIND = {"description": "A kind's code: hand_hygiene_garbing, gloved_fingertip, media_fill, or one an admin added"}


class QualificationCreateSchema(Schema):
    user_id = fields.Integer(load_default=None, allow_none=True, strict=True, validate=RECORD_ID,
                             metadata={"description": "The person; or name them by `username`"})
    username = fields.String(load_default=None, allow_none=True, validate=validate.Length(min=1, max=USERNAME_MAX))
    kind = fields.String(required=True, validate=validate.Length(min=1, max=LABEL_MAX), metadata=_KIND)
    passed_on = Day(required=True, metadata={"description": "The day of the test or assessment (not in the future)"})
    result = fields.String(required=True, validate=validate.OneOf(QUALIFICATION_RESULTS))
    valid_until = Day(load_default=None, allow_none=True,
                      metadata={"description": "A pass's last valid day (default: the kind's interval after "
                                               "passed_on, which is also its latest); none for a fail"})
    cfu = fields.Integer(load_default=None, allow_none=True, strict=True, validate=validate.Range(0, CFU_MAX),
                         metadata={"description": "Colony-forming units counted: required by kinds that count them "
                                                  "(gloved fingertip: 0 in the initial series, at most 2 after), "
                                                  "refused by the others"})
    assessor = fields.String(load_default="", validate=validate.Length(max=NAME_MAX))
    note = fields.String(load_default="", validate=validate.Length(max=NOTE_MAX))


class QualificationSchema(Schema):
    id = fields.Integer()
    user_id = fields.Integer()
    username = fields.String()
    display_name = fields.String()
    kind = fields.String(metadata=_KIND)
    kind_name = fields.String()
    passed_on = fields.Date()
    result = fields.String(metadata={"enum": list(QUALIFICATION_RESULTS)})
    cfu = fields.Integer(allow_none=True)
    valid_until = fields.Date(allow_none=True)
    assessor = fields.String()
    note = fields.String()
    recorded_by = fields.String(allow_none=True, metadata={"description": "Who recorded it (null: the command line)"})
    recorded_by_id = fields.Integer(allow_none=True)
    recorded_at = fields.DateTime()
    voided = fields.Boolean()
    voided_at = fields.DateTime(allow_none=True)
    voided_by = fields.String(allow_none=True)
    void_reason = fields.String()


class QualificationQuerySchema(Schema):
    class Meta:
        unknown = EXCLUDE

    user_id = fields.Integer(validate=RECORD_ID, metadata={"description": "One person's records"})
    kind = fields.String(validate=validate.Length(min=1, max=LABEL_MAX), metadata=_KIND)
    due_within = fields.Integer(
        validate=validate.Range(0, DUE_WITHIN_MAX),
        metadata={"description": "Days: only each active person's current record of a kind whose standing is "
                                 "due by then, lapsed, failed, or an unfinished initial series"})


class VoidSchema(Schema):
    reason = reason_text()


class StandingSchema(Schema):
    kind = fields.String(metadata=_KIND)
    name = fields.String()
    state = fields.String(metadata={"enum": list(STATES)})
    usable = fields.Boolean(metadata={"description": "Valid (or due soon): compounding and verifying may go on"})
    valid_until = fields.Date(allow_none=True)
    category3_valid_until = fields.Date(allow_none=True, metadata={
        "description": "The last day the pass stands for Category 3 compounding (its kind's shorter interval)"})
    failed_on = fields.Date(allow_none=True)
    passes = fields.Integer(metadata={"description": "Passes in a row so far (an initial series)"})
    needed = fields.Integer(metadata={"description": "Passes in a row the kind needs first"})
    required = fields.Boolean(metadata={"description": "Compounding and verifying need it"})
    message = fields.String()


class PersonStandingSchema(Schema):
    user_id = fields.Integer()
    username = fields.String()
    display_name = fields.String()
    role = fields.String()
    active = fields.Boolean()
    on = fields.Date(metadata={"description": "The clinic day judged (today)"})
    requirement = fields.Boolean(metadata={"description": "Whether the clinic requires qualifications "
                                                          "(REQUIRE_QUALIFICATIONS)"})
    may_compound = fields.Boolean(metadata={"description": "The role compounds and nothing required stands in the "
                                                           "way (Category 1 and 2 intervals; Category 3 needs its "
                                                           "shorter one)"})
    may_verify = fields.Boolean()
    may_compound_category_3 = fields.Boolean(metadata={
        "description": "As may_compound, with Category 3's shorter intervals"})
    standings = fields.List(fields.Nested(StandingSchema))


class KindSchema(Schema):
    id = fields.Integer()
    code = fields.String()
    name = fields.String()
    valid_months = fields.Integer()
    category3_months = fields.Integer()
    initial_passes = fields.Integer()
    counts_cfu = fields.Boolean()
    required = fields.Boolean()
    active = fields.Boolean()
    builtin = fields.Boolean()


class KindCreateSchema(Schema):
    code = fields.String(required=True, validate=validate.Length(min=2, max=LABEL_MAX),
                         metadata={"description": "Lower-case letters, digits and underscores (aseptic_technique)"})
    name = fields.String(required=True, validate=validate.Length(min=1, max=NAME_MAX))
    valid_months = fields.Integer(load_default=6, strict=True, validate=validate.Range(1, 60))
    category3_months = fields.Integer(load_default=3, strict=True, validate=validate.Range(1, 60))
    initial_passes = fields.Integer(load_default=1, strict=True, validate=validate.Range(1, 10))
    counts_cfu = fields.Boolean(load_default=False)
    required = fields.Boolean(load_default=True)
