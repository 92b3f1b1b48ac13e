-- orloj-ray PostgreSQL store, schema version 1.
-- Names and orderings use the "C" collation so lists sort by code point, as the memory store does.

CREATE TABLE orloj_resources (
    kind             text COLLATE "C" NOT NULL,
    namespace        text COLLATE "C" NOT NULL,
    name             text COLLATE "C" NOT NULL,
    resource_version bigint NOT NULL,
    generation       bigint NOT NULL,
    created_at       text NOT NULL,
    labels           jsonb NOT NULL DEFAULT '{}'::jsonb,
    body             jsonb NOT NULL,                  -- the object without status
    status           jsonb NOT NULL DEFAULT '{}'::jsonb,
    PRIMARY KEY (kind, namespace, name)               -- serves get and every (kind[, namespace]) list
);

-- labelSelector terms are a containment test: labels @> '{"team": "x"}'.
CREATE INDEX orloj_resources_labels ON orloj_resources USING gin (labels jsonb_path_ops);

-- Claim scans look for tasks by phase.
CREATE INDEX orloj_resources_task_phase ON orloj_resources ((coalesce(status->>'phase', '')), namespace, name)
    WHERE kind = 'Task';

-- The event id counter. Writers take this row's lock as the last statement of their
-- transaction, so ids are handed out in commit order: a reader that has seen id N never
-- sees an id below N appear later.
CREATE TABLE orloj_event_seq (
    only_row boolean PRIMARY KEY DEFAULT true CHECK (only_row),
    last_id  bigint NOT NULL
);
INSERT INTO orloj_event_seq (last_id) VALUES (0);

CREATE TABLE orloj_events (
    id               bigint PRIMARY KEY,
    ts               text NOT NULL,
    source           text NOT NULL,
    type             text NOT NULL,
    kind             text NOT NULL,
    namespace        text NOT NULL,
    name             text NOT NULL,
    action           text NOT NULL,
    data             jsonb,
    resource_version text NOT NULL
);

-- Watchers LISTEN on orloj_events; the payload is the new event id.
CREATE FUNCTION orloj_events_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('orloj_events', NEW.id::text);
    RETURN NULL;
END;
$$;

CREATE TRIGGER orloj_events_notify AFTER INSERT ON orloj_events
    FOR EACH ROW EXECUTE FUNCTION orloj_events_notify();
