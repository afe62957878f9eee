# The fleet the cluster file expects: every fixed node, plus per enrollment rule the machines it
# is expected to enrol (`expectedNodes`, null = unknown). HostDeployment and ServiceSpec
# selectors are matched against this to catch a selector that can select nothing or a service
# asking for more replicas than nodes exist. Counts are upper bounds (null = unbounded), so a
# check built on them fails only when the file cannot possibly work.
config:
let
  inherit (builtins) attrNames all concatLists elem filter genList length mapAttrs head isString
    split replaceStrings;

  # A node or rule naming an unknown class or pool is already an error of its own; it counts
  # here as "could be anything", so it does not also make selectors look empty.
  classOf = name: config.nodeClasses.${name} or { defaultLabels = { }; runNodeAgent = true; };
  poolOf = name: config.pools.${name} or { labels = { }; };
  uncertain = cls: pool: !(config.nodeClasses ? ${cls}) || !(config.pools ? ${pool});

  fixedIds = attrNames config.nodes;

  fixed = map (id: let n = config.nodes.${id}; in {
    kind = "node";
    source = "nodes.${id}";
    nodeIds = [ id ];
    count = 1;
    inherit (n) class pool failureDomain;
    uncertain = uncertain n.class n.pool;
    labels = (classOf n.class).defaultLabels // (poolOf n.pool).labels // n.labels;
    runNodeAgent = (classOf n.class).runNodeAgent;
  }) fixedIds;

  placeholders = t: filter (x: !isString x) (split "[{]([^{}]*)[}]" t);
  # Names a rule will hand out, when its template depends only on {index}, {pool} and {class}:
  # the deployer takes the smallest index whose name is free, so fixed node ids are skipped.
  predictedIds = name: r:
    let
      template = if r.nodeIdTemplate != "" then r.nodeIdTemplate
                 else if r.hostnameTemplate != "" then r.hostnameTemplate else "{class}-{index}";
      names = map head (placeholders template);
      render = i: replaceStrings [ "{index}" "{pool}" "{class}" ] [ (toString i) r.pool r.class ] template;
      candidates = genList (i: render (i + 1)) (r.expectedNodes + length fixedIds);
      free = filter (c: !(config.nodes ? ${c})) candidates;
    in if r.expectedNodes == null || !(all (p: elem p [ "index" "pool" "class" ]) names) || !(elem "index" names) then null
       else genList (i: builtins.elemAt free i) r.expectedNodes;

  rules = map (name: let r = config.enrollmentRules.${name}; labels = (classOf r.class).defaultLabels // (poolOf r.pool).labels // r.labels; in {
    kind = "rule";
    source = "enrollmentRules.${name}";
    nodeIds = predictedIds name r;
    count = r.expectedNodes;
    inherit (r) class pool;
    inherit labels;
    uncertain = uncertain r.class r.pool;
    failureDomain = if r.failureDomainLabel == "" then "" else labels.${r.failureDomainLabel} or "";
    runNodeAgent = (classOf r.class).runNodeAgent;
  }) (attrNames config.enrollmentRules);

  sumCounts = l: builtins.foldl' (a: b: if a == null || b == null then null else a + b) 0 l;
in
rec {
  shapes = fixed ++ rules;

  # Node ids that can exist: fixed ones and predicted ones; `complete` is false when some rule
  # names nodes unpredictably, so an unknown id may still appear.
  knownIds = concatLists (map (s: if s.nodeIds == null then [ ] else s.nodeIds) shapes);
  idsComplete = all (s: s.nodeIds != null || s.count == 0) rules;

  # How many nodes of `shape` can match `sel` (null = unbounded). Missing selector lists match
  # everything, as in the proto.
  matchCount = sel: shape:
    let
      classes = sel.classes or [ ];
      pools = sel.pools or [ ];
      matchLabels = sel.matchLabels or { };
      nodeIds = sel.nodeIds or [ ];
      attrsOk = shape.uncertain || (classes == [ ] || elem shape.class classes)
        && (pools == [ ] || elem shape.pool pools)
        && all (k: (shape.labels.${k} or null) == matchLabels.${k}) (attrNames matchLabels);
    in if !attrsOk then 0
       else if nodeIds == [ ] || shape.nodeIds == null then shape.count
       else length (filter (id: elem id nodeIds) shape.nodeIds);

  # Which ids of `shape` match (null when unknown or unbounded).
  matchedIds = sel: shape:
    if matchCount sel shape == 0 then [ ]
    else if shape.nodeIds == null then null
    else if (sel.nodeIds or [ ]) == [ ] then shape.nodeIds
    else filter (id: elem id sel.nodeIds) shape.nodeIds;

  total = sel: pred: sumCounts (map (matchCount sel) (filter pred shapes));
  inherit sumCounts;
}
