"""The pipeline: plain stages that the Faust agents in ``streams/app.py`` feed in batches.

The commit order, per input partition (docs/exactness.md says why a crash between any
two steps loses nothing and doubles nothing); each step is marked ``# Step N`` where
it happens:

0. a batch drops the records of partitions a rebalance took away (engine/inbox.py);
1. ``FoldStage``: decode and validate; a record outside its message's partition is
   forwarded to ``message-events`` (fold.py);
2. ``FoldStage``: fold into the message's state, one table write per message (fold.py);
3. ``FoldStage``: hand each touched message's whole contribution on, by campaign (fold.py);
4. ``AggregateStage``: newest version per message wins; the views move (aggregate.py);
5. the engine flushes every record and commits the batch's offsets (engine/);
6. after a (re)assignment: tables restored in bulk, views rebuilt (engine/, app.py).
"""
