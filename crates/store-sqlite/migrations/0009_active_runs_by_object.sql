-- Loading a batch's objects reads their active runs. `runs_by_object` on (object,
-- status) answered that with three searches per object (one per active status), each
-- followed by a search of the runs table, and every change of a run's status moved its
-- entry. Now the index on all runs (an object's history, `runs_for`) is on the object
-- alone, so a status change leaves it be, and a partial index holds only the active
-- runs, so loading finds them with one search in a far smaller tree.
DROP INDEX runs_by_object;
CREATE INDEX runs_by_object ON runs (object);
CREATE INDEX runs_active_by_object ON runs (object)
    WHERE (status = 'new' OR status = 'running' OR status = 'waiting');
