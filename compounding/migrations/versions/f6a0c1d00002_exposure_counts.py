"""Exposure counts: what each lot and batch reached, per site, kept with each use.

- `exposure_counts` (kind lot|batch, item, site; site 0 = the whole chain): batches and vials
  used, sessions (voided ones too), voided sessions, distinct patients, volume of the sessions
  that stand.
- `exposure_patients`, `exposure_vials`, `exposure_batches`: the memberships that keep the
  distinct counts exact one session at a time.
- Backfilled from the links set-based (INSERT ... SELECT ... GROUP BY); a lot includes the
  batches made from its child lots.

Revision ID: f6a0c1d00002
Revises: f6a0c1d00001
Create Date: 2026-12-08 09:00:00

"""
import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision = 'f6a0c1d00002'
down_revision = 'f6a0c1d00001'
branch_labels = None
depends_on = None

# The recount as it stood at this revision (services/exposure.py: _statements("")), frozen here.
BACKFILL = (
    'DELETE FROM exposure_counts ',
    'DELETE FROM exposure_patients ',
    'DELETE FROM exposure_vials ',
    'DELETE FROM exposure_batches ',
    "WITH RECURSIVE lineage(lot_id, ancestor_id) AS (\n    SELECT id, id FROM lots\n    UNION ALL\n    SELECT lineage.lot_id, lots.parent_lot_id FROM lineage JOIN lots ON lots.id = lineage.ancestor_id\n    WHERE lots.parent_lot_id IS NOT NULL),\nlinks(kind, item_id, batch_id) AS (\n    SELECT 'batch', id, id FROM batches\n    UNION\n    SELECT 'lot', lineage.ancestor_id, batch_components.batch_id\n    FROM batch_components JOIN lineage ON lineage.lot_id = batch_components.lot_id),\nscope(kind, item_id, batch_id) AS (SELECT kind, item_id, batch_id FROM links ),\nused AS (\n    SELECT scope.kind, scope.item_id, scope.batch_id, su.vial_id, su.volume_ml, ts.id AS session_id,\n           ts.patient_id, ts.site_id, ts.voided_at\n    FROM scope JOIN session_uses su ON su.batch_id = scope.batch_id\n    JOIN treatment_sessions ts ON ts.id = su.session_id)\n INSERT INTO exposure_patients (kind, item_id, site_id, patient_id, uses) SELECT kind, item_id, site_id, patient_id, count(*) FROM used  GROUP BY kind, item_id, site_id, patient_id",
    'INSERT INTO exposure_patients (kind, item_id, site_id, patient_id, uses) SELECT kind, item_id, 0, patient_id, sum(uses) FROM exposure_patients WHERE site_id <> 0  GROUP BY kind, item_id, patient_id',
    "WITH RECURSIVE lineage(lot_id, ancestor_id) AS (\n    SELECT id, id FROM lots\n    UNION ALL\n    SELECT lineage.lot_id, lots.parent_lot_id FROM lineage JOIN lots ON lots.id = lineage.ancestor_id\n    WHERE lots.parent_lot_id IS NOT NULL),\nlinks(kind, item_id, batch_id) AS (\n    SELECT 'batch', id, id FROM batches\n    UNION\n    SELECT 'lot', lineage.ancestor_id, batch_components.batch_id\n    FROM batch_components JOIN lineage ON lineage.lot_id = batch_components.lot_id),\nscope(kind, item_id, batch_id) AS (SELECT kind, item_id, batch_id FROM links ),\nused AS (\n    SELECT scope.kind, scope.item_id, scope.batch_id, su.vial_id, su.volume_ml, ts.id AS session_id,\n           ts.patient_id, ts.site_id, ts.voided_at\n    FROM scope JOIN session_uses su ON su.batch_id = scope.batch_id\n    JOIN treatment_sessions ts ON ts.id = su.session_id)\n INSERT INTO exposure_vials (kind, item_id, site_id, vial_id, uses) SELECT kind, item_id, site_id, vial_id, count(*) FROM used WHERE vial_id IS NOT NULL GROUP BY kind, item_id, site_id, vial_id",
    'INSERT INTO exposure_vials (kind, item_id, site_id, vial_id, uses) SELECT kind, item_id, 0, vial_id, sum(uses) FROM exposure_vials WHERE site_id <> 0  GROUP BY kind, item_id, vial_id',
    "WITH RECURSIVE lineage(lot_id, ancestor_id) AS (\n    SELECT id, id FROM lots\n    UNION ALL\n    SELECT lineage.lot_id, lots.parent_lot_id FROM lineage JOIN lots ON lots.id = lineage.ancestor_id\n    WHERE lots.parent_lot_id IS NOT NULL),\nlinks(kind, item_id, batch_id) AS (\n    SELECT 'batch', id, id FROM batches\n    UNION\n    SELECT 'lot', lineage.ancestor_id, batch_components.batch_id\n    FROM batch_components JOIN lineage ON lineage.lot_id = batch_components.lot_id),\nscope(kind, item_id, batch_id) AS (SELECT kind, item_id, batch_id FROM links ),\nused AS (\n    SELECT scope.kind, scope.item_id, scope.batch_id, su.vial_id, su.volume_ml, ts.id AS session_id,\n           ts.patient_id, ts.site_id, ts.voided_at\n    FROM scope JOIN session_uses su ON su.batch_id = scope.batch_id\n    JOIN treatment_sessions ts ON ts.id = su.session_id)\n INSERT INTO exposure_batches (kind, item_id, site_id, batch_id, uses) SELECT kind, item_id, site_id, batch_id, count(*) FROM used  GROUP BY kind, item_id, site_id, batch_id",
    'INSERT INTO exposure_batches (kind, item_id, site_id, batch_id, uses) SELECT kind, item_id, 0, batch_id, sum(uses) FROM exposure_batches WHERE site_id <> 0  GROUP BY kind, item_id, batch_id',
    "WITH RECURSIVE lineage(lot_id, ancestor_id) AS (\n    SELECT id, id FROM lots\n    UNION ALL\n    SELECT lineage.lot_id, lots.parent_lot_id FROM lineage JOIN lots ON lots.id = lineage.ancestor_id\n    WHERE lots.parent_lot_id IS NOT NULL),\nlinks(kind, item_id, batch_id) AS (\n    SELECT 'batch', id, id FROM batches\n    UNION\n    SELECT 'lot', lineage.ancestor_id, batch_components.batch_id\n    FROM batch_components JOIN lineage ON lineage.lot_id = batch_components.lot_id),\nscope(kind, item_id, batch_id) AS (SELECT kind, item_id, batch_id FROM links ),\nused AS (\n    SELECT scope.kind, scope.item_id, scope.batch_id, su.vial_id, su.volume_ml, ts.id AS session_id,\n           ts.patient_id, ts.site_id, ts.voided_at\n    FROM scope JOIN session_uses su ON su.batch_id = scope.batch_id\n    JOIN treatment_sessions ts ON ts.id = su.session_id)\n INSERT INTO exposure_counts (kind, item_id, site_id, batches, vials, patients, sessions, voided_sessions, volume_ml) SELECT kind, item_id, site_id, 0, 0, 0, count(DISTINCT session_id), count(DISTINCT CASE WHEN voided_at IS NOT NULL THEN session_id END),\n    coalesce(sum(CASE WHEN voided_at IS NULL THEN volume_ml ELSE 0 END), 0) FROM used GROUP BY kind, item_id, site_id",
    'INSERT INTO exposure_counts (kind, item_id, site_id, batches, vials, patients, sessions, voided_sessions, volume_ml) SELECT kind, item_id, 0, 0, 0, 0, sum(sessions), sum(voided_sessions), sum(volume_ml) FROM exposure_counts WHERE site_id <> 0  GROUP BY kind, item_id',
    'UPDATE exposure_counts SET patients = (SELECT count(*) FROM exposure_patients m WHERE m.kind = exposure_counts.kind AND m.item_id = exposure_counts.item_id AND m.site_id = exposure_counts.site_id), vials = (SELECT count(*) FROM exposure_vials m WHERE m.kind = exposure_counts.kind AND m.item_id = exposure_counts.item_id AND m.site_id = exposure_counts.site_id), batches = (SELECT count(*) FROM exposure_batches m WHERE m.kind = exposure_counts.kind AND m.item_id = exposure_counts.item_id AND m.site_id = exposure_counts.site_id) ',
)


def _membership(name: str, member: str) -> None:
    op.create_table(name,
    sa.Column('kind', sa.String(length=5), nullable=False),
    sa.Column('item_id', sa.Integer(), nullable=False),
    sa.Column('site_id', sa.Integer(), nullable=False),
    sa.Column(member, sa.Integer(), nullable=False),
    sa.Column('uses', sa.Integer(), nullable=False),
    sa.PrimaryKeyConstraint('kind', 'item_id', 'site_id', member, name=op.f(f'pk_{name}'))
    )


def upgrade():
    op.create_table('exposure_counts',
    sa.Column('kind', sa.String(length=5), nullable=False),
    sa.Column('item_id', sa.Integer(), nullable=False),
    sa.Column('site_id', sa.Integer(), nullable=False),
    sa.Column('batches', sa.Integer(), nullable=False),
    sa.Column('vials', sa.Integer(), nullable=False),
    sa.Column('sessions', sa.Integer(), nullable=False),
    sa.Column('voided_sessions', sa.Integer(), nullable=False),
    sa.Column('patients', sa.Integer(), nullable=False),
    sa.Column('volume_ml', sa.Numeric(precision=14, scale=3), nullable=False),
    sa.CheckConstraint("kind IN ('lot', 'batch')", name=op.f('ck_exposure_counts_kind_known')),
    sa.PrimaryKeyConstraint('kind', 'item_id', 'site_id', name=op.f('pk_exposure_counts'))
    )
    _membership('exposure_patients', 'patient_id')
    _membership('exposure_vials', 'vial_id')
    _membership('exposure_batches', 'batch_id')
    for statement in BACKFILL:
        op.execute(sa.text(statement))


def downgrade():
    for name in ('exposure_batches', 'exposure_vials', 'exposure_patients', 'exposure_counts'):
        op.drop_table(name)
