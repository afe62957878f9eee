# Syntax of Ironic root-device hint expressions, as the deployer's resolver parses them
# (services/deployer/domain/root-device.ts): a policy accepted here is one the resolver can
# evaluate at install time. Returns a list of "path: problem" strings.
let
  inherit (builtins) any concatLists elemAt filter genList head isString length match split
    stringLength substring fromJSON elem;

  upper = "ABCDEFGHIJKLMNOPQRSTUVWXYZ";
  lowerChars = "abcdefghijklmnopqrstuvwxyz";
  chars = s: genList (i: substring i 1 s) (stringLength s);
  toLower = builtins.replaceStrings (chars upper) (chars lowerChars);
  trim = s: let m = match "[[:space:]]*(.*[^[:space:]])[[:space:]]*" s; in if m == null then "" else head m;

  # Longest first, so `s==` is not read as `s` + `==` and `<=` not as `<` + `=`.
  operators = [ "<range-in>" "<all-in>" "<or>" "<in>" "s==" "s!=" "s<=" "s>=" "s<" "s>" "==" "!=" "<=" ">=" "<" ">" "=" ];
  stringOperators = [ "s==" "s!=" "s<" "s<=" "s>" "s>=" "<in>" "<or>" ];
  sizeOperators = [ "==" "!=" "<" "<=" ">" ">=" "<or>" "<range-in>" ];

  splitOperator = e:
    let found = filter (op: substring 0 (stringLength op) e == op) operators;
    in if found == [ ] then { op = null; rest = e; }
       else { op = head found; rest = substring (stringLength (head found)) (stringLength e) e; };

  orValues = rest: filter (v: v != "") (map trim (filter isString (split "<or>" rest)));

  stringHint = path: field: source:
    let e = toLower (trim source); s = splitOperator e; op = s.op;
        values = if op == "<or>" then orValues s.rest else [ (trim s.rest) ];
    in if op == null then [ ]
       else if op == "=" then [ "${path}.${field}: operator \"=\" is ambiguous (oslo specs_matcher reads it as \">=\"); use s== for strings" ]
       else if !(elem op stringOperators) then [ "${path}.${field}: operator \"${op}\" is not valid for a string hint; use one of s==, s!=, s<, s<=, s>, s>=, <in>, <or>" ]
       else if values == [ ] || head values == "" then [ "${path}.${field}: operator \"${op}\" needs a value" ]
       else [ ];

  sizeHint = path: source:
    let e = toLower (trim source); s = splitOperator e; op = if s.op == null then "==" else s.op;
        at = "${path}.size";
        range = match "([[(])[[:space:]]*([0-9]+)[[:space:]]+([0-9]+)[[:space:]]*([])])" (trim s.rest);
        texts = if op == "<or>" then orValues s.rest else [ (trim s.rest) ];
        bad = filter (t: match "[0-9]+" t == null || fromJSON t == 0) texts;
    in if op == "=" then [ "${at}: operator \"=\" is ambiguous (oslo specs_matcher reads it as \">=\"); use == or >=" ]
       else if !(elem op sizeOperators) then [ "${at}: operator \"${op}\" is not valid for size; use one of ==, !=, <, <=, >, >=, <or>, <range-in>" ]
       else if op == "<range-in>" then
         (if range == null then [ "${at}: \"<range-in>\" expects \"[low high]\" with ( or [ and ) or ], e.g. \"<range-in> [100 500)\"" ]
          else if fromJSON (elemAt range 1) > fromJSON (elemAt range 2) then [ "${at}: \"<range-in>\" lower bound ${elemAt range 1} is above upper bound ${elemAt range 2}" ]
          else [ ])
       else if texts == [ ] then [ "${at}: operator \"${op}\" needs a value" ]
       else if bad != [ ] then [ "${at}: \"${head bad}\" is not a positive whole number of GiB" ]
       else [ ];

  stringFields = [ "name" "byPath" "wwn" "wwnWithExtension" "wwnVendorExtension" "serial" "model" "vendor" "hctl" ];
in
{
  inherit trim toLower;

  hasAnyHint = h: h.rotational != null || trim h.size != "" || any (f: trim h.${f} != "") stringFields;

  hintProblems = path: h:
    concatLists (map (f: if trim h.${f} == "" then [ ] else stringHint path f h.${f}) stringFields)
    ++ (if trim h.size == "" then [ ] else sizeHint path h.size);
}
