"""The city page's one script: search as you type, answered by the broker.

Without it the page works all the same: the search box is a ``GET`` form whose answer is
the page with the results.  With it, each pause in typing (150 ms) asks
``/disco/search?q=…&lang=…`` for JSON (:mod:`broker.login.discovery`) and shows the
results in place, built with ``textContent`` only (no HTML from the answer is parsed);
an answer to an older query than the last one sent is dropped.  The result buttons go
inside the page's choice form, so a choice is the same CSRF-protected ``POST`` as
without the script.

The source is a constant: the page's Content-Security-Policy allows it by its hash
(:data:`SCRIPT_HASH`), and ``connect-src 'self'`` lets it reach the broker and nothing else.
Everything the script needs from the page is read from ``data-`` attributes.
"""

from __future__ import annotations

from broker.web import csp

SEARCH_SCRIPT = """
(function(){
var form=document.getElementById('search'),q=document.getElementById('q'),
 box=document.getElementById('results'),list=document.getElementById('result-list'),
 status=document.getElementById('status'),all=document.getElementById('all'),seq=0,timer=null;
if(!form||!q||!box||!list)return;
function marked(el,text,marks){var at=0;(marks||[]).forEach(function(m){
 el.appendChild(document.createTextNode(text.slice(at,m[0])));var k=document.createElement('mark');
 k.textContent=text.slice(m[0],m[1]);el.appendChild(k);at=m[1];});
 el.appendChild(document.createTextNode(text.slice(at)));}
function span(el,cls,text,marks,before,after){if(before)el.appendChild(document.createTextNode(' '));
 var s=document.createElement('span');s.className=cls;if(after)s.appendChild(document.createTextNode('('));
 marked(s,text,marks);if(after)s.appendChild(document.createTextNode(')'));el.appendChild(s);}
function item(r){var el;if(r.idp){el=document.createElement('button');el.name='idp';el.value=r.idp;}
 else{el=document.createElement('a');el.href=r.href;}
 el.className='choice result';el.setAttribute('data-tenant',r.tenant);el.setAttribute('data-kind',r.kind);
 if(r.school)el.setAttribute('data-school',r.school);
 span(el,'name',r.name,r.matched===null?r.marks:[]);
 if(r.matched!==null)span(el,'matched',r.matched,r.marks,true,true);
 if(r.where)span(el,'where',r.where,[],true);
 span(el,'kind',r.kind_label,[]);var li=document.createElement('li');li.appendChild(el);return li;}
function show(data){list.textContent='';var none=document.getElementById('no-matches');if(none)none.remove();
 data.results.forEach(function(r){list.appendChild(item(r));});
 if(data.no_matches){var d=document.createElement('div');d.id='no-matches';
  var p=document.createElement('p');p.className='lead';p.textContent=data.no_matches.title;d.appendChild(p);
  var h=document.createElement('p');h.textContent=data.no_matches.help+' ';var a=document.createElement('a');
  a.href=data.no_matches.help_url;a.textContent=data.no_matches.help_link;h.appendChild(a);d.appendChild(h);
  box.appendChild(d);}
 status.textContent=data.status;box.setAttribute('data-query',data.query);box.hidden=false;
 if(all)all.hidden=true;}
function run(){var text=q.value.trim(),mine=++seq;
 if(!text){list.textContent='';var none=document.getElementById('no-matches');if(none)none.remove();
  status.textContent='';box.setAttribute('data-query','');box.hidden=true;if(all)all.hidden=false;return;}
 var url=form.getAttribute('data-endpoint')+'?'+new URLSearchParams({q:text,lang:form.getAttribute('data-lang')});
 fetch(url,{headers:{Accept:'application/json'},credentials:'same-origin'}).then(function(r){
  return r.ok?r.json():null;}).then(function(data){if(data&&mine===seq)show(data);}).catch(function(){});}
q.addEventListener('input',function(){clearTimeout(timer);timer=setTimeout(run,150);});
form.addEventListener('submit',function(e){e.preventDefault();clearTimeout(timer);run();});
})();
"""

SCRIPT_HASH = csp.script_hash(SEARCH_SCRIPT)
