"""Migration 5's SQL: what windows of schema 4 counted of people, in ``windows``, in the hourly
roll-ups and in the ``people_*`` views (``edge.fleet.schema`` applies it).

People are everyone whose person track ended in a window, face or not (``edge.people``): not a
part of the visitors, so they have views of their own rather than columns of the visitors views.
The views read the roll-ups and apply the device's rules (``edge.people_cells``) again after summing:
``people`` and each way of ``crossings`` are shown when 0 or >= ``min_cell`` (``fleet_cell``); a split
(with a face or not, passers-by or stayers) only when each of its sides and the people of the windows
that hid it are (``fleet_split_shown``). Zones stay in the stored payload.
"""

from __future__ import annotations

PEOPLE = """
-- What each window counted of people (schema 4 with people on; false for schema 2 and 3). The
-- previous release refused schema 4, so every row stored before this migration is false and null.
-- Zones stay in payload.
ALTER TABLE windows
    ADD COLUMN people_counted boolean NOT NULL DEFAULT false,
    ADD COLUMN people integer,                  -- null: 1..k-1, or not counted
    ADD COLUMN people_with_face integer,        -- null: hidden with people, or a side of the split 1..k-1
    ADD COLUMN passers_by integer,              -- null with stayers: a side 1..k-1, or people null
    ADD COLUMN stayers integer,
    ADD COLUMN crossing_line boolean NOT NULL DEFAULT false,  -- the window has crossings (a counting line)
    ADD COLUMN crossings_in integer,            -- null: 1..k-1, or no line
    ADD COLUMN crossings_out integer;

-- Sums of published values (null while none was published).
ALTER TABLE hourly
    ADD COLUMN windows_people integer NOT NULL DEFAULT 0,            -- windows that counted people
    ADD COLUMN windows_people_suppressed integer NOT NULL DEFAULT 0, -- of those, windows with people null
    ADD COLUMN people bigint,
    ADD COLUMN people_with_face bigint,
    ADD COLUMN people_face_n bigint,            -- people of the windows that published people_with_face
    ADD COLUMN passers_by bigint,               -- over the windows that published passers-by and stayers
    ADD COLUMN stayers bigint,
    ADD COLUMN windows_line integer NOT NULL DEFAULT 0,              -- windows with a counting line
    ADD COLUMN crossings_in bigint,
    ADD COLUMN crossings_out bigint;

-- Whether the parts of a split of summed counts may be shown: each part 0 or >= min_cell
-- (edge.suppression.risky on every side, as edge.people_cells splits people, after summing).
CREATE FUNCTION fleet_split_shown(VARIADIC parts bigint[]) RETURNS boolean
LANGUAGE sql STABLE AS $$
SELECT bool_and(part IS NOT NULL AND fleet_cell(part, fleet_min_cell()) IS NOT NULL) FROM unnest(parts) AS part
$$;
"""


def people_view(name: str, period: str, by_device: bool) -> str:
    """A people view: people per hour or day and site or device, from the device-hours in which some
    window counted people (schema 4 with people on); every figure under the k-rule after summing."""
    device_col = "device" if by_device else "NULL::text AS device"
    group = "1, site, device" if by_device else "1, site"
    return f"""
CREATE VIEW {name} AS
SELECT date_trunc('{period}', hour, 'UTC') AS period_start,
       site, {device_col},
       sum(windows_people) AS windows,
       sum(windows_people_suppressed) AS windows_suppressed,
       fleet_cell(sum(people)::bigint, fleet_min_cell()) AS people,
       CASE WHEN fleet_split_shown(sum(people_with_face)::bigint, (sum(people_face_n) - sum(people_with_face))::bigint,
                                   (coalesce(sum(people), 0) - sum(people_with_face))::bigint)
            THEN sum(people_with_face)::bigint END AS people_with_face,
       CASE WHEN fleet_split_shown(sum(passers_by)::bigint, sum(stayers)::bigint,
                                   (coalesce(sum(people), 0) - sum(passers_by) - sum(stayers))::bigint)
            THEN sum(passers_by)::bigint END AS passers_by,
       CASE WHEN fleet_split_shown(sum(passers_by)::bigint, sum(stayers)::bigint,
                                   (coalesce(sum(people), 0) - sum(passers_by) - sum(stayers))::bigint)
            THEN sum(stayers)::bigint END AS stayers,
       sum(windows_line) AS windows_line,
       fleet_cell(sum(crossings_in)::bigint, fleet_min_cell()) AS crossings_in,
       fleet_cell(sum(crossings_out)::bigint, fleet_min_cell()) AS crossings_out
FROM hourly
WHERE windows_people > 0
GROUP BY {group};
"""
