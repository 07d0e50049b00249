"""The API docs page (``/api/v1/docs``): the OpenAPI document rendered as HTML by the gateway.

Self-contained: no script, style sheet or font from elsewhere, so the page works on a machine
without internet access (a firewalled cluster). The server renders every operation (method,
path, parameters, request body, responses with their status codes) and the schemas, so it reads
without JavaScript; a few lines of inline script add a "try it" form per operation.
"""

from __future__ import annotations

import html
import json
from typing import Any

_STYLE = """
body{font:15px/1.45 system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:0;color:#1d2733}
header{background:#1d2733;color:#fff;padding:18px 28px}header a{color:#9cd3ff}
main{max-width:1100px;margin:0 auto;padding:10px 28px 60px}
nav a{display:inline-block;margin:2px 10px 2px 0}
details.op{border:1px solid #d5dde5;border-radius:6px;margin:10px 0}
details.op>summary{cursor:pointer;padding:8px 12px;list-style:none}
.m{display:inline-block;min-width:64px;font-weight:700;text-transform:uppercase;border-radius:4px;
   text-align:center;color:#fff;margin-right:10px;padding:1px 6px}
.get{background:#2f80c0}.post{background:#2d9b5b}.delete{background:#c0392b}.put,.patch{background:#b07d12}
.body{padding:4px 16px 12px}table{border-collapse:collapse;margin:6px 0}
td,th{border:1px solid #d5dde5;padding:4px 8px;text-align:left;vertical-align:top}
pre{background:#f4f6f8;padding:8px;overflow:auto;font-size:13px}code{font-size:13px}
textarea{width:100%;font:13px monospace}input{font:13px monospace}
"""

_SCRIPT = """
async function tryIt(form){
  const out=form.querySelector('pre.out');let path=form.dataset.path;const q=new URLSearchParams();
  const headers={};const token=document.getElementById('token').value.trim();
  if(token)headers['Authorization']=token.includes(' ')?token:'Bearer '+token;
  for(const el of form.querySelectorAll('input[data-in]')){
    if(!el.value)continue;const where=el.dataset.in;
    if(where==='path')path=path.replace('{'+el.name+'}',encodeURIComponent(el.value));
    else if(where==='query')q.append(el.name,el.value);else headers[el.name]=el.value;}
  const init={method:form.dataset.method.toUpperCase(),headers};const body=form.querySelector('textarea');
  if(body&&body.value.trim()){init.body=body.value;headers['Content-Type']='application/json';}
  const url=form.dataset.base+path+(q.toString()?'?'+q:'');out.textContent='...';
  try{const r=await fetch(url,init);const text=await r.text();
    out.textContent=r.status+' '+r.statusText+'\\n'+r.headers.get('content-type')+'\\n\\n'+text.slice(0,20000);}
  catch(e){out.textContent=String(e);}
}
"""


def _e(text: Any) -> str:
    return html.escape(str(text), quote=True)


def _resolve(doc: dict, obj: Any) -> Any:
    while isinstance(obj, dict) and "$ref" in obj:
        node: Any = doc
        for part in obj["$ref"].lstrip("#/").split("/"):
            node = node[part]
        obj = node
    return obj


def _schema_html(schema: Any) -> str:
    """A schema as JSON text, ``$ref`` names linked to their section."""
    text = _e(json.dumps(schema, indent=2))
    for name in _refs(schema):
        quoted = _e(json.dumps(f"#/components/schemas/{name}"))
        text = text.replace(quoted, f'<a href="#schema-{_e(name)}">{quoted}</a>')
    return f"<pre>{text}</pre>"


def _refs(obj: Any) -> set[str]:
    if isinstance(obj, dict):
        found = {obj["$ref"].rsplit("/", 1)[-1]} if isinstance(obj.get("$ref"), str) else set()
        for v in obj.values():
            found |= _refs(v)
        return found
    if isinstance(obj, list):
        return set().union(*(_refs(v) for v in obj)) if obj else set()
    return set()


def _example(doc: dict, schema: Any) -> str:
    schema = _resolve(doc, schema)
    if isinstance(schema, dict):
        if "example" in schema:
            return json.dumps(schema["example"], indent=2)
        for key in ("oneOf", "anyOf"):
            if schema.get(key):
                return _example(doc, schema[key][0])
        props = schema.get("properties")
        if isinstance(props, dict):
            required = schema.get("required") or list(props)
            sample = {k: _sample(doc, props[k]) for k in props if k in required}
            return json.dumps(sample, indent=2)
    return ""


def _sample(doc: dict, schema: Any) -> Any:
    schema = _resolve(doc, schema)
    if not isinstance(schema, dict):
        return None
    if "example" in schema:
        return schema["example"]
    if "default" in schema:
        return schema["default"]
    return {"string": "", "integer": 0, "number": 0, "boolean": False, "array": [], "object": {}}.get(
        schema.get("type"), None)


def _operation(doc: dict, base: str, path: str, method: str, op: dict, shared: list) -> str:
    params = [_resolve(doc, p) for p in shared + op.get("parameters", [])]
    out = [f'<details class="op" id="{_e(op.get("operationId", method + path))}"><summary>'
           f'<span class="m {_e(method)}">{_e(method)}</span><code>{_e(base + path)}</code> '
           f'{_e(op.get("summary", ""))}</summary><div class="body">']
    if op.get("description"):
        out.append(f"<p>{_e(op['description'])}</p>")
    form = [f'<form data-path="{_e(path)}" data-method="{_e(method)}" data-base="{_e(base)}" '
            f'onsubmit="tryIt(this); return false">']
    if params:
        out.append("<h4>Parameters</h4><table><tr><th>name</th><th>in</th><th>required</th><th>schema</th>"
                   "<th>description</th></tr>")
        for p in params:
            out.append(f"<tr><td><code>{_e(p['name'])}</code></td><td>{_e(p['in'])}</td>"
                       f"<td>{'yes' if p.get('required') else 'no'}</td>"
                       f"<td><code>{_e(json.dumps(p.get('schema', {})))}</code></td>"
                       f"<td>{_e(p.get('description', ''))}</td></tr>")
            form.append(f'<label>{_e(p["name"])} ({_e(p["in"])}) <input name="{_e(p["name"])}" '
                        f'data-in="{_e(p["in"])}"></label><br>')
        out.append("</table>")
    body = op.get("requestBody")
    if body:
        body = _resolve(doc, body)
        out.append(f"<h4>Request body{' (required)' if body.get('required') else ''}</h4>")
        for media, content in body.get("content", {}).items():
            out.append(f"<p><code>{_e(media)}</code></p>{_schema_html(content.get('schema', {}))}")
            if media == "application/json":
                form.append(f"<textarea rows=6>{_e(_example(doc, content.get('schema', {})))}</textarea>")
    out.append("<h4>Responses</h4><table><tr><th>status</th><th>description</th><th>content</th></tr>")
    for status, resp in op.get("responses", {}).items():
        resp = _resolve(doc, resp)
        kinds = ", ".join(resp.get("content", {})) or "-"
        out.append(f"<tr><td><b>{_e(status)}</b></td><td>{_e(resp.get('description', ''))}</td>"
                   f"<td><code>{_e(kinds)}</code></td></tr>")
    out.append("</table>")
    form.append('<button type="submit">Try it</button><pre class="out"></pre></form>')
    out.append("<h4>Try it</h4>" + "".join(form) + "</div></details>")
    return "".join(out)


def render_docs(doc: dict, openapi_url: str) -> str:
    """The whole page for OpenAPI document ``doc`` (whose JSON is served at ``openapi_url``)."""
    info = doc.get("info", {})
    base = (doc.get("servers") or [{"url": ""}])[0]["url"].rstrip("/")
    sections: dict[str, list[str]] = {}
    for path, item in doc.get("paths", {}).items():
        shared = item.get("parameters", [])
        for method, op in item.items():
            if method == "parameters":
                continue
            tag = (op.get("tags") or ["other"])[0]
            sections.setdefault(tag, []).append(_operation(doc, base, path, method, op, shared))
    parts = [f"<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>{_e(info.get('title'))}"
             f"</title><style>{_STYLE}</style></head><body><header><h1>{_e(info.get('title'))} "
             f"<small>{_e(info.get('version', ''))}</small></h1><p>{_e(info.get('description', ''))}</p>"
             f'<p>OpenAPI document: <a href="{_e(openapi_url)}">{_e(openapi_url)}</a></p></header><main>',
             "<nav>" + "".join(f'<a href="#tag-{_e(t)}">{_e(t)}</a>' for t in sections)
             + '<a href="#schemas">schemas</a></nav>',
             '<p><label>Authorization (an API key, or a full header value) <input id="token" size="40">'
             "</label></p>"]
    for tag, ops in sections.items():
        parts.append(f'<h2 id="tag-{_e(tag)}">{_e(tag)}</h2>' + "".join(ops))
    parts.append('<h2 id="schemas">Schemas</h2>')
    for name, schema in doc.get("components", {}).get("schemas", {}).items():
        parts.append(f'<h3 id="schema-{_e(name)}">{_e(name)}</h3>{_schema_html(schema)}')
    parts.append(f"</main><script>{_SCRIPT}</script></body></html>")
    return "".join(parts)
